// pincer webchat: one page, one WebSocket (/ws), no dependencies.
//
// The protocol is described in CONTRACT.md §4. In short: the server greets with `ready` (user,
// rooms), the page `join`s the open room (with `after_seq` after a reconnect, so exactly the
// missed messages come back), `send`s with a client-chosen `client_id` (idempotent, so a resend
// is never stored twice) and receives `ack`, `message`, `update`, `history`,
// `stream`/`tool`/`stream_end`, `typing`, `rooms` and `error` frames.
//
// Messages may carry files, reactions, an edit time and (from agents) a question card whose
// buttons answer with an ordinary message; `update` re-renders a message that changed.
'use strict';

(() => {
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  /** Longest wait before a send refused by the rate limit is tried again. */
  const RATE_RETRY_MAX_MS = 60000;
  const TYPING_REFRESH_MS = 3000; // at most one "typing: true" per this interval
  const TYPING_IDLE_MS = 5000; // "typing: false" after this long without input
  const TYPING_EXPIRE_MS = 8000; // someone else's typing state, unless refreshed
  const THINKING_EXPIRE_MS = 120000; // give up on a reply that never comes
  // A finished stream whose final message never came (the turn failed after streaming) goes away.
  const STREAM_LINGER_MS = 20000;
  const CLOSED_STREAMS_MAX = 200; // remembered per room, so late frames cannot revive a bubble
  const AT_BOTTOM_PX = 48;
  const STAGED_MAX = 10; // files chosen for one message
  const PREVIEW_BYTES_MAX = 64 * 1024; // text files this small can be previewed in the message
  const PREVIEW_LINES_MAX = 200;
  const RESUMABLE_FROM = 8 * 1024 * 1024; // larger files go in chunks that survive a dropped link
  const UPLOAD_CHUNK = 4 * 1024 * 1024;
  const RESUME_TRIES_MAX = 8; // failed chunks in a row before giving up
  const RESUME_PAUSE_MAX_MS = 30000;
  const OLDER_PAGE = 100; // messages fetched per scroll back
  const OLDER_PAGE_MAX = 1000; // the API's largest page (a jump back fetches up to this many)
  const OLDER_AT_PX = 300; // this close to the top, the next older page is fetched
  // Formatters made once: toLocale*String builds a new one on every call, which dominated
  // showing a page of older messages.
  const FULL_DATE = new Intl.DateTimeFormat([], { dateStyle: 'full', timeStyle: 'medium' });
  const CLOCK = new Intl.DateTimeFormat([], { hour: 'numeric', minute: '2-digit' });
  const DAY = new Intl.DateTimeFormat([], { weekday: 'long', month: 'long', day: 'numeric' });
  const DAY_YEAR = new Intl.DateTimeFormat([], { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

  const SEARCH_DEBOUNCE_MS = 250;
  const FLASH_MS = 2000; // a message jumped to stays marked this long
  const COPIED_MS = 1500; // "Copied" shows this long
  const GROUP_GAP_MS = 5 * 60 * 1000; // consecutive messages within this gap are grouped
  const STORE_ROOM = 'pincer.room';
  const STORE_BANNER = 'pincer.mockBannerDismissed';
  const STORE_USER = 'pincer.user'; // whose outbox this page shows before the server says
  const STORE_ROOMS = 'pincer.rooms'; // the last room list, shown while offline

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $('app'),
    scrim: $('scrim'),
    menuToggle: $('menu-toggle'),
    rooms: $('rooms'),
    roomsEmpty: $('rooms-empty'),
    whoami: $('whoami'),
    openPeople: $('open-people'),
    openModels: $('open-models'),
    signOut: $('sign-out'),
    newAgent: $('new-agent'),
    newRoom: $('new-room'),
    roomSettings: $('room-settings'),
    openSearch: $('open-search'),
    searchDialog: $('search-dialog'),
    searchInput: $('search-input'),
    searchStatus: $('search-status'),
    searchResults: $('search-results'),
    roomTitle: $('room-title'),
    roomSubtitle: $('room-subtitle'),
    conn: $('conn-state'),
    connLabel: $('conn-label'),
    reconnectNow: $('reconnect-now'),
    banner: $('mock-banner'),
    bannerClose: $('mock-banner-close'),
    messages: $('messages'),
    empty: $('empty'),
    emptyTitle: $('empty-title'),
    emptyHint: $('empty-hint'),
    newPill: $('new-pill'),
    activity: $('activity'),
    form: $('composer-form'),
    composer: $('composer'),
    send: $('send'),
    stop: $('stop'),
    attach: $('attach'),
    fileInput: $('file-input'),
    staged: $('staged'),
    main: document.querySelector('.main'),
    lightbox: $('lightbox'),
    lightboxImg: $('lightbox-img'),
    lightboxOpen: $('lightbox-open'),
    lightboxClose: $('lightbox-close'),
    dialog: $('agent-dialog'),
    agentForm: $('agent-form'),
    agentName: $('agent-name'),
    agentInstructions: $('agent-instructions'),
    agentError: $('agent-error'),
    agentCancel: $('agent-cancel'),
    agentCreate: $('agent-create'),
    toasts: $('toasts'),
  };

  const state = {
    ws: null,
    ready: false, // `ready` received on the current socket
    retryMs: RECONNECT_MIN_MS,
    retryTimer: 0,
    user: null,
    rooms: [], // as listed by the server
    roomData: new Map(), // room id -> RoomState
    joined: new Set(), // rooms joined on the current socket
    current: null, // open room id
    wantRoom: null, // room to open once it is listed (after creating an agent)
    typing: { room: null, active: false, lastSent: 0, idleTimer: 0 },
    refusalShown: false, // the server's reason for refusing the socket was shown
    signingIn: false, // the sign-in screen is up: no reconnecting meanwhile
  };

  /** Everything the page knows about one room. */
  function roomState(id) {
    let r = state.roomData.get(id);
    if (!r) {
      r = {
        id,
        messages: new Map(), // id -> Message
        maxSeq: 0,
        minSeq: Infinity, // the oldest message here; older ones are fetched on scrolling up
        loadingOlder: null, // the fetch of an older page under way
        loaded: false, // some history has arrived
        pending: new Map(), // client_id -> {text, failed, error}
        uploads: new Map(), // client_id -> {file, caption, loaded, xhr, failed, error}
        staged: [], // files chosen, sent with the next message
        // stream_id -> {agent, text, tools: [{name, summary, done}], status, ended, lingerTimer}
        streams: new Map(),
        closedStreams: new Set(), // streams replaced by their final message (or given up)
        answers: new Map(), // card message id -> option label clicked on this page
        thinking: false, // a reply is expected (client-side guess)
        thinkingTimer: 0,
        typers: new Map(), // user id -> {name, timer}
        unread: 0,
        draft: '',
      };
      state.roomData.set(id, r);
    }
    return r;
  }

  // ---------------------------------------------------------------- connection

  function wsUrl() {
    return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = 0;
    if (state.ws) return;
    setConn(state.user ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.addEventListener('message', (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      onFrame(frame);
    });
    ws.addEventListener('close', (ev) => {
      if (state.ws !== ws) return;
      // 1008: signed out, removed or access changed elsewhere; the server says which.
      if (!state.ready || ev.code === 1008) explainRefusal();
      state.ws = null;
      state.ready = false;
      state.joined.clear();
      state.typing.active = false;
      // Streams cannot resume on a new socket; their final messages arrive through catch-up.
      for (const r of state.roomData.values()) r.streams.clear();
      if (state.current) renderRoom();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (state.signingIn) return;
    setConn('reconnecting');
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, RECONNECT_MAX_MS);
  }

  /** A socket closed before `ready`: signed out means the sign-in screen; else say why (once). */
  async function explainRefusal() {
    try {
      const res = await fetch('/api/auth/check');
      if (res.status === 401) {
        clearTimeout(state.retryTimer);
        state.signingIn = true;
        await window.PincerAccess.gate();
        state.signingIn = false;
        reconnectNow();
        return;
      }
      if (res.status !== 403 || state.refusalShown) return;
      const data = await res.json().catch(() => ({}));
      state.refusalShown = true;
      toast(data.error || `pincer refused the connection (${res.status}).`);
    } catch {
      // The host is down: reconnecting is all there is to do.
    }
  }

  /** Skips the remaining backoff (button, network back, tab shown again). */
  function reconnectNow() {
    if (state.ws) return;
    state.retryMs = RECONNECT_MIN_MS;
    connect();
  }

  function isOpen() {
    return state.ready && state.ws && state.ws.readyState === WebSocket.OPEN;
  }

  function sendFrame(frame) {
    if (!isOpen()) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function setConn(s) {
    ui.conn.dataset.state = s;
    ui.connLabel.textContent = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…' }[s];
    ui.reconnectNow.hidden = s !== 'reconnecting';
    const online = s === 'connected';
    // Typing goes on offline: sends wait in the outbox (kept across reloads) until the connection is back.
    ui.composer.disabled = !state.current;
    ui.attach.disabled = !online || !state.current;
    ui.composer.placeholder = online ? 'Message' : 'Offline: messages go out when the connection is back';
    updateSendButton();
  }

  // ---------------------------------------------------------------- frames

  function onFrame(f) {
    switch (f.type) {
      case 'ready': return onReady(f);
      case 'rooms': return setRooms(f.rooms || []);
      case 'history': return onHistory(f);
      case 'message': return onMessage(f);
      case 'update': return onUpdate(f);
      case 'ack': return onAck(f);
      case 'error': return onError(f);
      case 'stream': return onStream(f);
      case 'tool': return onTool(f);
      case 'stream_end': return onStreamEnd(f);
      case 'typing': return onTyping(f);
      case 'pins': return window.PincerPins.set(f.room_id, f.pins);
      default: return undefined; // newer server, older page: ignore what we do not know
    }
  }

  function onReady(f) {
    state.ready = true;
    state.retryMs = RECONNECT_MIN_MS;
    state.user = f.user || null;
    ui.newAgent.hidden = !(state.user && state.user.owner);
    ui.newRoom.hidden = !(state.user && state.user.owner);
    ui.whoami.textContent = state.user ? `Signed in as ${state.user.displayName}` : '';
    ui.openPeople.hidden = !(state.user && state.user.admin);
    ui.openModels.hidden = !(state.user && state.user.owner);
    ui.signOut.hidden = !(state.user && state.user.via === 'session');
    ui.banner.hidden = f.modelConfigured !== false || sessionStorage.getItem(STORE_BANNER) === '1';
    setConn('connected');
    if (state.user) localStorage.setItem(STORE_USER, state.user.id);
    restoreOutbox(state.user ? state.user.id : null);
    setRooms(f.rooms || []);
    window.PincerDevice.reportView();
    // Messages still waiting for an ack were maybe never received: send them again (same client_id).
    for (const r of state.roomData.values()) {
      for (const [clientId, p] of r.pending) {
        if (!p.failed) sendFrame({ type: 'send', room_id: r.id, client_id: clientId, text: p.text });
      }
    }
  }

  function onHistory(f) {
    const r = roomState(f.room_id);
    // Catching up after a reconnect brings news (unread counts, replies); the first load does not.
    const catchUp = r.loaded;
    r.loaded = true;
    addMessages(r, f.messages || [], catchUp);
    if (state.jump && state.jump.room === r.id) runJump();
    else if (r.id === state.current) fillViewport(r);
  }

  function onMessage(f) {
    if (!f.message) return;
    const r = roomState(f.room_id || f.message.room_id);
    if (f.stream_id) dropStream(r, f.stream_id);
    addMessages(r, [f.message], true);
  }

  /** A stored message changed (edited, reacted to): re-render it where it is. */
  function onUpdate(f) {
    const m = f.message;
    if (!m || !m.id) return;
    const r = roomState(f.room_id || m.room_id);
    if (!r.messages.has(m.id)) return; // not loaded here: it comes with the history when it is
    r.messages.set(m.id, m);
    if (r.id !== state.current) return;
    const old = ui.messages.querySelector(`[data-id="${CSS.escape(m.id)}"]`);
    if (old) replaceMessageEl(old, messageEl(m));
  }

  function onAck(f) {
    const m = f.message;
    if (!m) return;
    addMessages(roomState(m.room_id), [m], true);
  }

  function onError(f) {
    if (f.client_id) {
      for (const r of state.roomData.values()) {
        const p = r.pending.get(f.client_id);
        if (!p) continue;
        if (f.code === 'rate_limited') {
          // Not stored: send it again (same client_id) when the server says it may.
          const wait = Math.min(Math.max(Number(f.retry_after_ms) || 1000, 100), RATE_RETRY_MAX_MS);
          setTimeout(() => { if (r.pending.has(f.client_id)) retry(r.id, f.client_id); }, wait);
          return;
        }
        p.failed = true;
        p.error = f.message || 'not sent';
        outbox.remove(f.client_id); // refused for good: the bubble offers Retry
        if (r.id === state.current) replacePendingEl(f.client_id, p);
        return;
      }
    }
    toast(f.message || `Error: ${f.code}`);
  }

  function onStream(f) {
    const r = roomState(f.room_id);
    if (r.closedStreams.has(f.stream_id)) return;
    const s = streamFor(r, f.stream_id, f.agent);
    s.text += f.delta || '';
    s.status = '';
    setThinking(r, false);
    if (r.id === state.current) updateStreamEl(f.stream_id, s);
  }

  function onTool(f) {
    const r = roomState(f.room_id);
    if (r.closedStreams.has(f.stream_id)) return;
    const s = streamFor(r, f.stream_id, null);
    s.status = '';
    if (f.name === 'retry') {
      // Not a tool: the model is busy and the agent waits to try again.
      if (f.state !== 'end') s.status = f.summary || 'retrying';
    } else if (f.state === 'end') {
      const running = [...s.tools].reverse().find((t) => t.name === f.name && !t.done);
      if (running) {
        running.done = true;
        if (f.summary) running.summary = f.summary;
        if (f.output != null) running.output = f.output;
      } else {
        s.tools.push({ name: f.name, summary: f.summary || '', input: f.input, output: f.output, done: true });
      }
    } else {
      s.tools.push({ name: f.name, summary: f.summary || '', input: f.input, done: false, open: false });
    }
    setThinking(r, false);
    if (r.id === state.current) updateStreamEl(f.stream_id, s);
  }

  function onStreamEnd(f) {
    const r = roomState(f.room_id);
    const s = r.streams.get(f.stream_id);
    if (!s) return;
    s.ended = true;
    s.status = '';
    for (const t of s.tools) t.done = true;
    // Without text there is nothing for a final message to replace; with text, the final
    // message (stored after the stream ended) normally replaces it soon.
    if (!s.text.trim()) {
      dropStream(r, f.stream_id);
      return;
    }
    s.lingerTimer = setTimeout(() => dropStream(r, f.stream_id), STREAM_LINGER_MS);
    if (r.id === state.current) updateStreamEl(f.stream_id, s);
  }

  function streamFor(r, id, agent) {
    let s = r.streams.get(id);
    if (!s) {
      s = { agent: agent || agentName(r.id), text: '', tools: [], status: '', ended: false, lingerTimer: 0 };
      r.streams.set(id, s);
    }
    return s;
  }

  /** The stream is over for good (its final message is here, or it never will be). */
  function dropStream(r, id) {
    r.closedStreams.add(id);
    if (r.closedStreams.size > CLOSED_STREAMS_MAX) r.closedStreams.delete(r.closedStreams.values().next().value);
    const s = r.streams.get(id);
    if (!s) return;
    clearTimeout(s.lingerTimer);
    r.streams.delete(id);
    if (r.id === state.current) {
      const el = ui.messages.querySelector(`[data-stream-id="${CSS.escape(id)}"]`);
      if (el) el.remove();
      updateActivity();
    }
  }

  function onTyping(f) {
    const who = f.user;
    if (!who || (state.user && who.id === state.user.id)) return;
    const r = roomState(f.room_id);
    const old = r.typers.get(who.id);
    if (old) clearTimeout(old.timer);
    if (f.is_typing) {
      const timer = setTimeout(() => {
        r.typers.delete(who.id);
        if (r.id === state.current) updateActivity();
      }, TYPING_EXPIRE_MS);
      r.typers.set(who.id, { name: who.displayName || 'Someone', timer });
    } else {
      r.typers.delete(who.id);
    }
    if (r.id === state.current) updateActivity();
  }

  // ---------------------------------------------------------------- rooms

  /** A new room list: keeps the open room if it is still listed, else opens the remembered one. */
  function setRooms(rooms) {
    state.rooms = rooms;
    localStorage.setItem(STORE_ROOMS, JSON.stringify(rooms));
    let next = state.current;
    if (state.wantRoom && rooms.some((x) => x.id === state.wantRoom)) {
      next = state.wantRoom;
      state.wantRoom = null;
    } else if (!rooms.some((x) => x.id === next)) {
      const saved = localStorage.getItem(STORE_ROOM);
      const pick = rooms.find((x) => x.id === saved) || rooms[0];
      next = pick ? pick.id : null;
    }
    if (next !== state.current) {
      selectRoom(next);
      return;
    }
    renderRoomList();
    renderRoomHeader();
    updateEmpty();
    joinRoom(next); // after a reconnect: catch up on the open room
  }

  function renderRoomList() {
    // Pinned rooms first; rooms put away last, dimmed (they stay reachable).
    const rank = (x) => (x.pinned && !x.archived ? 0 : x.archived ? 2 : 1);
    const ordered = [...state.rooms].sort((a, b) => rank(a) - rank(b));
    ui.rooms.replaceChildren(...ordered.map((room) => {
      const li = document.createElement('li');
      li.dataset.roomId = room.id;
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'room';
      const active = room.id === state.current;
      li.classList.toggle('active', active);
      li.classList.toggle('archived', !!room.archived);
      li.classList.toggle('pinned', !!room.pinned && !room.archived);
      if (active) btn.setAttribute('aria-current', 'true');
      const first = (room.agents || [])[0];
      const avatar = el('span', `avatar hue-${hue(first ? first.name : room.name)}`, initials(room.name));
      avatar.setAttribute('aria-hidden', 'true');
      const text = el('span', 'room-text');
      text.append(el('span', 'room-name', room.name));
      const agents = (room.agents || []).map((a) => a.name).join(', ');
      if (agents && agents !== room.name) text.append(el('span', 'room-agents', agents));
      btn.append(avatar, text);
      const unread = roomState(room.id).unread;
      if (unread && !active) {
        const badge = el('span', 'badge', unread > 99 ? '99+' : String(unread));
        badge.setAttribute('aria-label', `${unread} unread`);
        btn.append(badge);
      }
      btn.addEventListener('click', () => {
        selectRoom(room.id);
        closeDrawer();
      });
      li.append(btn);
      return li;
    }));
    ui.roomsEmpty.hidden = state.rooms.length > 0;
  }

  function renderRoomHeader() {
    const room = state.rooms.find((x) => x.id === state.current);
    ui.roomTitle.textContent = room ? room.name : 'pincer';
    ui.roomSettings.hidden = !room;
    const agents = room
      ? (room.agents || []).map((a) => (a.id === room.prime_agent_id && room.agents.length > 1 ? `${a.name} ★` : a.name)).join(', ')
      : '';
    ui.roomSubtitle.textContent = agents && agents !== room.name ? `with ${agents}` : '';
  }

  function agentName(roomId) {
    const room = state.rooms.find((x) => x.id === roomId);
    return (room && room.agents && room.agents[0] && room.agents[0].name) || 'Agent';
  }

  function selectRoom(id) {
    if (id === state.current) {
      joinRoom(id);
      return;
    }
    stopTyping();
    if (state.current) roomState(state.current).draft = ui.composer.value;
    state.current = id;
    if (id) localStorage.setItem(STORE_ROOM, id);
    const r = id ? roomState(id) : null;
    if (r) r.unread = 0;
    ui.composer.value = r ? r.draft : '';
    renderStaged();
    autoGrow();
    setConn(ui.conn.dataset.state);
    renderRoomList();
    renderRoomHeader();
    renderRoom();
    window.PincerPins.show(id);
    if (id) joinRoom(id);
    window.PincerDevice.reportView();
  }

  /** Joins a room on the current socket once; with `after_seq` when history is already here. */
  function joinRoom(id) {
    if (!id || !isOpen() || state.joined.has(id)) return;
    const r = roomState(id);
    const frame = { type: 'join', room_id: id };
    if (r.loaded) frame.after_seq = r.maxSeq;
    if (sendFrame(frame)) state.joined.add(id);
  }

  // ---------------------------------------------------------------- messages

  /**
   * Stores messages (de-duplicated by id) and shows those of the open room in seq order.
   * `live`: news (a live event or a catch-up), as opposed to the first load of a room's history.
   */
  function addMessages(r, messages, live) {
    const isCurrent = r.id === state.current;
    const stick = isCurrent && atBottom();
    let fresh = 0;
    let mine = false;
    let fromUsers = false;
    for (const m of messages) {
      if (!m || !m.id || r.messages.has(m.id)) continue;
      r.messages.set(m.id, m);
      r.maxSeq = Math.max(r.maxSeq, m.seq);
      r.minSeq = Math.min(r.minSeq, m.seq);
      if (m.sender_type === 'user') fromUsers = true;
      const own = isOwn(m);
      // The stored copy of a message this page sent replaces its pending bubble.
      const sentHere = m.client_id && (r.pending.delete(m.client_id) | r.uploads.delete(m.client_id));
      if (sentHere) outbox.remove(m.client_id);
      if (sentHere && isCurrent) {
        const p = ui.messages.querySelector(`[data-client-id="${CSS.escape(m.client_id)}"]`);
        if (p) p.remove();
        mine = true;
      }
      if (live && m.sender_type !== 'user') setThinking(r, false);
      if (live && own && m.sender_type === 'user') setThinking(r, true);
      if (isCurrent) {
        insertMessageEl(messageEl(m));
        if (live && !own) fresh++;
      } else if (live && !own) {
        r.unread++;
      }
    }
    if (!isCurrent) {
      if (live) renderRoomList();
      return;
    }
    if (fromUsers) refreshCards(r); // a user message may answer an open question
    updateEmpty();
    if (stick || mine) {
      scrollToBottom();
    } else if (fresh) {
      ui.newPill.hidden = false;
    }
    if (fresh && document.hidden) document.title = `• ${document.title.replace(/^• /, '')}`;
  }

  function isOwn(m) {
    return m.sender_type === 'user' && !!state.user && m.sender_id === state.user.id;
  }

  /** Re-renders the open room from what the page knows. */
  function renderRoom() {
    ui.messages.replaceChildren();
    ui.newPill.hidden = true;
    const r = state.current ? roomState(state.current) : null;
    if (r) {
      const sorted = [...r.messages.values()].sort((a, b) => a.seq - b.seq);
      for (const m of sorted) insertMessageEl(messageEl(m));
      for (const [id, s] of r.streams) updateStreamEl(id, s);
      for (const [clientId, p] of r.pending) ui.messages.append(pendingEl(clientId, p));
      for (const [clientId, u] of r.uploads) ui.messages.append(uploadEl(r, clientId, u));
      ui.messages.querySelectorAll('.msg').forEach(decorate);
    }
    updateEmpty();
    updateActivity();
    scrollToBottom();
    if (r && r.loaded) fillViewport(r);
  }

  /** The placeholder shown while the open room's message list is empty. */
  function updateEmpty() {
    const r = state.current ? roomState(state.current) : null;
    let title = 'No messages yet — say hello';
    let hint = r ? `Messages here go to ${agentName(r.id)}.` : '';
    if (!state.user) {
      title = 'Connecting…';
    } else if (!r) {
      title = 'No rooms yet';
      hint = state.user.owner ? 'Create an agent to start a conversation.' : '';
    } else if (!r.loaded) {
      title = 'Loading…';
      hint = '';
    }
    ui.emptyTitle.textContent = title;
    ui.emptyHint.textContent = hint;
    ui.empty.hidden = ui.messages.childElementCount > 0;
  }

  /**
   * Puts a stored message at its place by seq. Live elements (streams, pending sends) have no
   * seq and stay at the end.
   */
  function insertMessageEl(node) {
    const seq = Number(node.dataset.seq);
    let before = null;
    for (let n = ui.messages.lastElementChild; n; n = n.previousElementSibling) {
      if (n.dataset.seq === undefined || Number(n.dataset.seq) > seq) before = n;
      else break;
    }
    ui.messages.insertBefore(node, before);
    decorate(node);
    if (node.nextElementSibling) decorate(node.nextElementSibling);
  }

  /**
   * Swaps a message's element for a fresh rendering without moving what the reader is looking
   * at: at the bottom the view stays at the bottom, otherwise the first message in view keeps
   * its place on screen.
   */
  function replaceMessageEl(old, fresh) {
    const box = ui.messages;
    const stick = atBottom();
    const top = box.getBoundingClientRect().top;
    const anchor = [...box.children].find((n) => n !== old && n.getBoundingClientRect().bottom > top);
    const before = anchor ? anchor.getBoundingClientRect().top : 0;
    old.replaceWith(fresh);
    decorate(fresh);
    if (stick) scrollToBottom();
    else if (anchor) box.scrollTop += anchor.getBoundingClientRect().top - before;
  }

  /** Re-renders the open room's question cards whose answer changed. */
  function refreshCards(r) {
    for (const node of ui.messages.querySelectorAll('.msg[data-card]')) {
      const m = r.messages.get(node.dataset.id);
      if (m && (cardAnswer(r, m) || '') !== node.dataset.answer) replaceMessageEl(node, messageEl(m));
    }
  }

  /** Day separators and grouping of consecutive messages from the same sender. */
  function decorate(node) {
    const prev = node.previousElementSibling;
    const t = Number(node.dataset.time) || Date.now();
    const pt = prev ? Number(prev.dataset.time) || Date.now() : 0;
    if (!prev || dayKey(t) !== dayKey(pt)) node.dataset.day = dayLabel(t);
    else delete node.dataset.day;
    const continued = !!prev && !node.dataset.day && node.dataset.senderType !== 'system'
      && prev.dataset.sender === node.dataset.sender && t - pt < GROUP_GAP_MS;
    node.classList.toggle('continued', continued);
  }

  function messageEl(m) {
    const own = isOwn(m);
    const kind = m.sender_type === 'system' ? 'system' : own ? 'own' : m.sender_type === 'user' ? 'other' : 'agent';
    const node = el('article', `msg msg-${kind}`);
    node.dataset.id = m.id;
    node.dataset.seq = String(m.seq);
    node.dataset.senderType = m.sender_type;
    // Agents are known by name (all a stream knows of them), people by id.
    const key = kind === 'agent' ? m.sender : m.sender_id || m.sender;
    node.dataset.sender = `${m.sender_type}:${key}`;
    node.dataset.time = String(m.created_at);
    if (kind === 'agent' || kind === 'other') node.append(senderEl(m.sender, key));
    const bubble = el('div', 'bubble');
    // A model that failed is reported by the agent as a notice: shown as an error.
    const error = kind === 'system' && /^model error:/i.test(String(m.text || ''));
    if (error) {
      node.classList.add('msg-error');
      bubble.append(errorIcon());
    }
    const card = kind === 'agent' ? validCard(m.card) : null;
    const approval = kind === 'agent' ? validApproval(m.card) : null;
    if (approval) {
      node.dataset.card = approval.approval_id;
      bubble.append(approvalEl(approval));
    } else if (card) {
      const r = roomState(m.room_id);
      const answer = cardAnswer(r, m);
      node.dataset.card = card.question_id || '1';
      node.dataset.answer = answer || '';
      bubble.append(cardEl(r, m, card, answer));
    } else if (m.deleted_at) {
      bubble.append(el('div', 'body body-deleted', 'Message deleted'));
    } else {
      const body = el('div', 'body');
      body.innerHTML = m.html || ''; // rendered and sanitised (ammonia) by the server
      for (const a of body.querySelectorAll('a[href]')) {
        a.target = '_blank';
        a.rel = 'noopener noreferrer nofollow';
      }
      window.PincerHighlight.highlight(body);
      for (const pre of body.querySelectorAll('pre')) pre.append(copyButton(pre));
      bubble.append(body);
    }
    const files = filesEl(m.files);
    if (files) bubble.append(files);
    const tools = toolsEl(m.tools);
    if (tools) bubble.append(tools);
    const stamp = stampEl(m.created_at, m.edited_at);
    if (!m.deleted_at && m.id) stamp.append(window.PincerPins.button(m));
    if (own && !m.deleted_at) stamp.append(deleteButton(m));
    bubble.append(stamp);
    node.append(bubble);
    const reactions = reactionsEl(m.reactions);
    if (reactions) node.append(reactions);
    if (m.room_id === state.current) window.PincerPins.mark(node);
    return node;
  }

  function errorIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', 'notice-icon');
    svg.setAttribute('aria-hidden', 'true');
    for (const [tag, attrs] of [
      ['circle', { cx: 12, cy: 12, r: 9 }],
      ['path', { d: 'M12 7.5v5.5' }],
      ['path', { d: 'M12 16.5h.01' }],
    ]) {
      const part = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) part.setAttribute(k, String(v));
      svg.append(part);
    }
    return svg;
  }

  /** The card of an agent's question, if it is one this page can show. */
  function validCard(card) {
    if (!card || card.type !== 'ask_question' || !Array.isArray(card.options)) return null;
    const options = card.options.filter((o) => o && typeof o.label === 'string' && o.label.trim());
    return options.length ? { ...card, options } : null;
  }

  /**
   * The option chosen for a question card: clicked on this page, or else the first later user
   * message in the room whose text is exactly one of the option labels.
   */
  function cardAnswer(r, m) {
    const card = validCard(m.card);
    if (!card) return null;
    const clicked = r.answers.get(m.id);
    if (clicked) return clicked;
    const labels = new Set(card.options.map((o) => o.label.trim()));
    let found = null;
    for (const x of r.messages.values()) {
      if (x.sender_type !== 'user' || x.seq <= m.seq || (found && x.seq >= found.seq)) continue;
      if (labels.has(String(x.text || '').trim())) found = x;
    }
    return found ? String(found.text).trim() : null;
  }

  function cardEl(r, m, card, answer) {
    // `.body` like any message's text, so the question reads (and copies) as the message.
    const box = el('div', 'body card');
    box.append(el('p', 'card-title', String(card.title || 'Question')));
    if (card.question) box.append(el('p', 'card-question', String(card.question)));
    const options = el('div', 'card-options');
    options.setAttribute('role', 'group');
    options.setAttribute('aria-label', String(card.question || card.title || 'Answers'));
    for (const o of card.options) {
      const label = o.label.trim();
      const btn = el('button', 'card-option', label);
      btn.type = 'button';
      btn.disabled = !!answer;
      btn.setAttribute('aria-pressed', String(answer === label));
      if (answer === label) btn.classList.add('chosen');
      btn.addEventListener('click', () => answerCard(r, m, label));
      options.append(btn);
    }
    box.append(options);
    if (answer) box.append(el('p', 'card-answered', `Answered: ${answer}`));
    return box;
  }

  /** An approval card: a request of the agent that the owner or an admin decides. */
  function validApproval(card) {
    if (!card || card.type !== 'approval' || typeof card.approval_id !== 'string') return null;
    return card;
  }

  function approvalEl(card) {
    const box = el('div', 'body card card-approval');
    box.append(el('p', 'card-title', String(card.title || 'Request')));
    box.append(el('p', 'card-question', String(card.question || '')));
    const states = { approved: 'Approved', denied: 'Denied', failed: 'Approved, but it failed' };
    if (card.state) {
      const by = card.decided_by ? ` by ${card.decided_by}` : '';
      box.append(el('p', `card-answered card-${card.state}`, `${states[card.state] || card.state}${by}`));
      return box;
    }
    const options = el('div', 'card-options');
    options.setAttribute('role', 'group');
    options.setAttribute('aria-label', String(card.question || 'Decision'));
    for (const [label, decision] of [['Approve', 'approve'], ['Deny', 'deny']]) {
      const btn = el('button', `card-option card-${decision}`, label);
      btn.type = 'button';
      btn.addEventListener('click', () => decide(card.approval_id, decision, options));
      options.append(btn);
    }
    box.append(options);
    return box;
  }

  /** Sends a decision; the card updates when the server says it was taken. */
  async function decide(id, decision, options) {
    for (const b of options.querySelectorAll('button')) b.disabled = true;
    try {
      const res = await fetch(`/api/approvals/${encodeURIComponent(id)}`, {
        method: 'POST',
        headers: { 'X-Webchat-CSRF': '1', 'Content-Type': 'application/json' },
        body: JSON.stringify({ decision }),
      });
      if (!res.ok) {
        const data = await res.json().catch(() => ({}));
        toast(data.error || `The decision was not taken (${res.status}).`);
        for (const b of options.querySelectorAll('button')) b.disabled = false;
      }
    } catch {
      toast('Not connected — the decision was not sent. Try again once connected.');
      for (const b of options.querySelectorAll('button')) b.disabled = false;
    }
  }

  /** A click on a card's option: the label goes out as an ordinary message. */
  function answerCard(r, m, label) {
    if (cardAnswer(r, m)) return;
    if (!sendText(r, label)) {
      toast('Not connected — the answer was not sent. Try again once connected.');
      return;
    }
    r.answers.set(m.id, label);
    const node = ui.messages.querySelector(`[data-id="${CSS.escape(m.id)}"]`);
    if (node && r.id === state.current) replaceMessageEl(node, messageEl(m));
  }

  /** Reaction chips: equal emoji grouped, with a count; the title says who. */
  function reactionsEl(reactions) {
    if (!Array.isArray(reactions) || !reactions.length) return null;
    const groups = new Map(); // emoji -> [who]
    for (const x of reactions) {
      if (!x || typeof x.emoji !== 'string' || !x.emoji) continue;
      if (!groups.has(x.emoji)) groups.set(x.emoji, []);
      groups.get(x.emoji).push(String(x.by || 'someone'));
    }
    if (!groups.size) return null;
    const box = el('div', 'reactions');
    for (const [emoji, who] of groups) {
      const chip = el('span', 'reaction');
      chip.append(el('span', 'reaction-emoji', emoji));
      if (who.length > 1) chip.append(el('span', 'reaction-count', String(who.length)));
      chip.title = `${emoji} ${who.join(', ')}`;
      chip.setAttribute('aria-label', `${emoji} by ${who.join(', ')}`);
      box.append(chip);
    }
    return box;
  }

  function senderEl(name, key) {
    const s = el('div', 'sender');
    const avatar = el('span', `avatar avatar-sm hue-${hue(key)}`, initials(name));
    avatar.setAttribute('aria-hidden', 'true');
    s.append(avatar, el('span', 'sender-name', name));
    return s;
  }

  /** The time line under a bubble: an "edited" label (when it was), then the time. */
  function stampEl(createdMs, editedMs) {
    const line = el('div', 'stamp');
    if (typeof editedMs === 'number') {
      const edited = el('span', 'edited', 'edited');
      edited.title = `Edited ${fullDate(editedMs)}`;
      line.append(edited);
    }
    const d = new Date(createdMs);
    const t = el('time', '', CLOCK.format(d));
    t.dateTime = d.toISOString();
    t.title = fullDate(createdMs);
    line.append(t);
    return line;
  }

  /** A Copy button for a code block (its text, without the button's own label). */
  function copyButton(pre) {
    const b = el('button', 'copy-code', 'Copy');
    b.type = 'button';
    b.setAttribute('aria-label', 'Copy the code');
    b.addEventListener('click', async () => {
      const code = pre.querySelector('code') || pre;
      const text = code.textContent;
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = 'Copied';
      } catch {
        b.textContent = 'Select and copy';
      }
      setTimeout(() => { b.textContent = 'Copy'; }, COPIED_MS);
    });
    return b;
  }

  function deleteButton(m) {
    const b = el('button', 'link-btn msg-delete', 'Delete');
    b.type = 'button';
    b.setAttribute('aria-label', 'Delete this message');
    b.addEventListener('click', async () => {
      if (!window.confirm('Delete this message for everyone? Agents that already read it keep what they read.')) return;
      const res = await fetch(`/api/rooms/${encodeURIComponent(m.room_id)}/messages/${encodeURIComponent(m.id)}`,
        { method: 'DELETE', headers: { 'X-Webchat-CSRF': '1' } }).catch(() => null);
      const body = res ? await res.json().catch(() => ({})) : {};
      if (!res || !res.ok) toast(body.error || 'Could not delete the message');
      else if (body.message) onUpdate({ room_id: m.room_id, message: body.message });
    });
    return b;
  }

  // ---------------------------------------------------------------- older messages, search

  /** Fetches the page of messages before the oldest one here; resolves when shown. */
  function loadOlder(r, want) {
    if (r.loadingOlder) return r.loadingOlder;
    if (!(r.minSeq > 1) || !Number.isFinite(r.minSeq)) return Promise.resolve(false);
    const limit = Math.min(OLDER_PAGE_MAX, Math.max(OLDER_PAGE, want || 0));
    const url = `/api/rooms/${encodeURIComponent(r.id)}/messages?before=${r.minSeq}&limit=${limit}`;
    showOlderStatus(r, 'Loading earlier messages…');
    r.loadingOlder = fetch(url)
      .then((res) => (res.ok ? res.json() : Promise.reject(new Error(`${res.status}`))))
      .then((body) => {
        addOlder(r, body.messages || []);
        showOlderStatus(r, r.minSeq > 1 ? '' : 'The beginning of the conversation');
        return true;
      })
      .catch(() => {
        showOlderStatus(r, 'Could not load earlier messages; scroll up to try again');
        return false;
      })
      .finally(() => {
        r.loadingOlder = null;
        // Still at the top (a fast scroll): the next page at once.
        if (r.id === state.current && ui.messages.scrollTop < OLDER_AT_PX && r.minSeq > 1) loadOlder(r);
      });
    return r.loadingOlder;
  }

  /** Shows older messages above what is in view without moving what the reader looks at. */
  function addOlder(r, messages) {
    if (r.id !== state.current) {
      for (const m of messages) {
        r.messages.set(m.id, m);
        r.minSeq = Math.min(r.minSeq, m.seq);
      }
      return;
    }
    const box = ui.messages;
    const height = box.scrollHeight;
    const top = box.scrollTop;
    // One batch above the oldest message shown (each page is older than everything here).
    const fresh = messages.filter((m) => m && m.id && !r.messages.has(m.id)).sort((a, b) => a.seq - b.seq);
    const nodes = fresh.map((m) => {
      r.messages.set(m.id, m);
      r.minSeq = Math.min(r.minSeq, m.seq);
      return messageEl(m);
    });
    const first = box.querySelector('.msg[data-seq]');
    const frag = document.createDocumentFragment();
    frag.append(...nodes);
    box.insertBefore(frag, first);
    for (const n of nodes) decorate(n);
    if (first) decorate(first);
    updateEmpty();
    box.scrollTop = top + (box.scrollHeight - height);
  }

  function showOlderStatus(r, text) {
    if (r.id !== state.current) return;
    let node = ui.messages.querySelector('.older-status');
    // The line stays (empty) once there: adding or removing it above thousands of messages
    // would move them all, a layout of the whole list for every page loaded.
    if (!text) {
      if (node) node.textContent = '';
      return;
    }
    if (!node) {
      node = el('div', 'older-status');
      node.dataset.seq = '0'; // above every message
      node.setAttribute('role', 'status');
      ui.messages.prepend(node);
    }
    node.textContent = text;
  }

  /** Loads older pages until the list can scroll (a short first page leaves nothing to scroll). */
  async function fillViewport(r) {
    for (let i = 0; i < 5 && r.id === state.current; i++) {
      if (ui.messages.scrollHeight > ui.messages.clientHeight + 40 || !(r.minSeq > 1)) return;
      if (!(await loadOlder(r))) return;
    }
  }

  /** Opens a room at a message (from search): loads back to it, centres and marks it. */
  function jumpTo(roomId, seq, id) {
    state.jump = { room: roomId, seq, id };
    if (state.current !== roomId) selectRoom(roomId);
    runJump(); // waits for the room's history when it is not here yet (onHistory runs it)
  }

  async function runJump() {
    const j = state.jump;
    if (!j) return;
    const r = roomState(j.room);
    if (!r.loaded || r.id !== state.current) return;
    state.jump = null;
    while (r.minSeq > j.seq) {
      if (!(await loadOlder(r, r.minSeq - j.seq + 10))) break;
    }
    const node = ui.messages.querySelector(`[data-id="${CSS.escape(j.id)}"]`);
    if (!node) {
      toast('That message is no longer here');
      return;
    }
    node.scrollIntoView({ block: 'center' });
    node.classList.add('flash');
    node.tabIndex = -1;
    node.focus({ preventScroll: true });
    setTimeout(() => node.classList.remove('flash'), FLASH_MS);
  }

  let searchTimer = 0;
  let searchSeq = 0;

  function openSearch() {
    ui.searchDialog.showModal();
    ui.searchInput.select();
  }

  /** Rooms whose name has the words typed: the search dialog switches rooms too (Ctrl/Cmd+K). */
  function roomHits(q) {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    return state.rooms
      .filter((r) => words.every((w) => String(r.name || '').toLowerCase().includes(w)))
      .slice(0, 5)
      .map((r) => {
        const li = el('li');
        const b = el('button', 'search-room');
        b.type = 'button';
        b.dataset.room = r.id;
        b.append(el('span', 'search-meta', 'Room'), el('span', 'search-snippet', r.name));
        b.addEventListener('click', () => {
          ui.searchDialog.close();
          closeDrawer();
          selectRoom(r.id);
        });
        li.append(b);
        return li;
      });
  }

  async function runSearch() {
    const q = ui.searchInput.value.trim();
    const mine = ++searchSeq;
    if (!q) {
      ui.searchResults.replaceChildren();
      ui.searchStatus.textContent = '';
      return;
    }
    const rooms = roomHits(q);
    ui.searchResults.replaceChildren(...rooms);
    ui.searchStatus.textContent = 'Searching…';
    const res = await fetch(`/api/search?q=${encodeURIComponent(q)}&limit=50`).catch(() => null);
    if (mine !== searchSeq) return; // a newer search is under way
    const body = res ? await res.json().catch(() => ({})) : {};
    if (!res || !res.ok) {
      ui.searchStatus.textContent = body.error || 'Could not search; try again.';
      return;
    }
    const results = body.results || [];
    ui.searchStatus.textContent = results.length ? `${results.length} found` : 'Nothing found';
    ui.searchResults.replaceChildren(...rooms, ...results.map((hit) => {
      const li = el('li');
      const b = el('button', 'search-hit');
      b.type = 'button';
      const room = state.rooms.find((x) => x.id === hit.room_id);
      const m = hit.message || {};
      b.append(
        el('span', 'search-meta', `${room ? room.name : hit.room_id} · ${m.sender || ''} · ${fullDate(m.created_at)}`),
        el('span', 'search-snippet', hit.snippet || ''),
      );
      b.dataset.room = hit.room_id;
      b.dataset.seq = String(hit.seq);
      b.addEventListener('click', () => {
        ui.searchDialog.close();
        closeDrawer();
        jumpTo(hit.room_id, hit.seq, m.id);
      });
      li.append(b);
      return li;
    }));
  }

  function fullDate(ms) {
    return FULL_DATE.format(new Date(ms));
  }

  function filesEl(files) {
    if (!Array.isArray(files) || !files.length) return null;
    const box = el('div', 'files');
    for (const f of files) {
      // Only same-origin paths: the server hands out /api/files/... URLs.
      if (!f || typeof f.url !== 'string' || !f.url.startsWith('/') || f.url.startsWith('//')) continue;
      const a = el('a', 'file');
      a.href = f.url;
      a.target = '_blank';
      a.rel = 'noopener';
      const size = formatSize(f.size);
      a.title = size ? `${f.name || 'file'} (${size})` : f.name || 'file';
      if (String(f.mime || '').startsWith('image/')) {
        const img = document.createElement('img');
        img.src = f.url;
        img.alt = f.name || 'image';
        img.loading = 'lazy';
        a.classList.add('file-image');
        a.append(img);
        a.addEventListener('click', (ev) => {
          if (ev.ctrlKey || ev.metaKey || ev.shiftKey || typeof ui.lightbox.showModal !== 'function') return;
          ev.preventDefault();
          ui.lightboxImg.src = f.url;
          ui.lightboxImg.alt = f.name || 'image';
          ui.lightboxOpen.href = f.url;
          ui.lightbox.showModal();
        });
      } else {
        a.classList.add('file-download');
        a.download = f.name || '';
        a.append(el('span', 'file-name', f.name || 'file'), el('span', 'file-size', size));
      }
      box.append(a);
      if (isText(f)) box.append(textPreview(f));
    }
    return box;
  }

  /** The tools an agent used for a reply, folded under it. */
  function toolsEl(tools) {
    if (!Array.isArray(tools) || !tools.length) return null;
    const d = el('details', 'tools-used');
    d.append(el('summary', '', tools.length === 1 ? 'Used 1 tool' : `Used ${tools.length} tools`));
    const list = el('ul');
    for (const t of tools) {
      const li = el('li');
      const head = [el('span', 'tool-name', String(t.name || 'tool'))];
      if (t.summary) head.push(el('span', 'tool-summary', ` ${t.summary}`));
      const detail = toolDetail(t);
      if (detail) {
        const inner = el('details', 'tool-call');
        const s = el('summary');
        s.append(...head);
        inner.append(s, detail);
        li.append(inner);
      } else {
        li.append(...head);
      }
      list.append(li);
    }
    d.append(list);
    return d;
  }

  /** A tool call's arguments and output, as plain text (never markup). */
  function toolDetail(t) {
    if (t.input == null && t.output == null) return null;
    const box = el('div', 'tool-detail');
    if (t.input != null) {
      let args = String(t.input);
      try { args = JSON.stringify(JSON.parse(args), null, 2); } catch { /* cut or not JSON: as sent */ }
      box.append(el('div', 'tool-detail-label', 'Arguments'), el('pre', 'tool-io', args));
    }
    if (t.output != null) {
      box.append(el('div', 'tool-detail-label', 'Output'), el('pre', 'tool-io', String(t.output) || '(nothing)'));
    } else {
      box.append(el('div', 'tool-detail-label muted', 'Running…'));
    }
    return box;
  }

  /** Small text files (notes, CSV, JSON, logs) can be read in the message. */
  function isText(f) {
    const mime = String(f.mime || '');
    return (mime.startsWith('text/') || mime.startsWith('application/json'))
      && typeof f.size === 'number' && f.size <= PREVIEW_BYTES_MAX;
  }

  /** A preview fetched when opened, shown as plain text. */
  function textPreview(f) {
    const d = el('details', 'file-preview');
    d.append(el('summary', '', `Preview ${f.name || 'file'}`));
    const pre = el('pre', 'file-preview-text');
    d.append(pre);
    d.addEventListener('toggle', async () => {
      if (!d.open || pre.dataset.loaded) return;
      pre.dataset.loaded = '1';
      pre.textContent = 'Loading…';
      try {
        const res = await fetch(f.url);
        if (!res.ok) throw new Error(String(res.status));
        const lines = (await res.text()).split('\n');
        pre.textContent = lines.slice(0, PREVIEW_LINES_MAX).join('\n')
          + (lines.length > PREVIEW_LINES_MAX ? `\n… ${lines.length - PREVIEW_LINES_MAX} more lines` : '');
      } catch {
        pre.textContent = 'Could not load the preview; open the file instead.';
      }
    });
    return d;
  }

  // ---------------------------------------------------------------- sending

  function sendCurrent() {
    const text = ui.composer.value;
    if (!state.current) return;
    const r = roomState(state.current);
    if (r.staged.length) {
      // The text goes with the first file as its caption.
      const files = r.staged.splice(0);
      // One after the other: they arrive in the order chosen.
      const caption = text.trim();
      files.reduce((prev, file, i) => prev.then(() => startUpload(r, file, i === 0 ? caption : '')), Promise.resolve());
      renderStaged();
    } else if (!text.trim() || !sendText(r, text)) {
      return;
    }
    ui.composer.value = '';
    r.draft = '';
    autoGrow();
    stopTyping();
  }

  /** Sends `text` to the room with a new client_id, shown at once as pending; false if offline. */
  function sendText(r, text) {
    const clientId = newClientId();
    const p = { text, failed: false, error: '' };
    r.pending.set(clientId, p);
    outbox.put({ client_id: clientId, room_id: r.id, text, user: state.user ? state.user.id : localStorage.getItem(STORE_USER), created: Date.now() });
    if (r.id === state.current) {
      ui.messages.append(pendingEl(clientId, p));
      decorate(ui.messages.lastElementChild);
      updateEmpty();
      scrollToBottom();
    }
    if (isOpen()) sendFrame({ type: 'send', room_id: r.id, client_id: clientId, text });
    return true;
  }

  // ---------------------------------------------------------------- the outbox (IndexedDB)

  /** Messages sent but not yet stored by the server, kept across reloads and offline spells. */
  const outbox = (() => {
    let opened = null;
    const db = () => {
      if (!opened) {
        opened = new Promise((resolve, reject) => {
          const req = indexedDB.open('pincer', 1);
          req.onupgradeneeded = () => req.result.createObjectStore('outbox', { keyPath: 'client_id' });
          req.onsuccess = () => resolve(req.result);
          req.onerror = () => reject(req.error);
        });
      }
      return opened;
    };
    const run = async (mode, fn) => {
      const d = await db();
      return new Promise((resolve, reject) => {
        const tx = d.transaction('outbox', mode);
        const req = fn(tx.objectStore('outbox'));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
      });
    };
    return {
      put: (entry) => run('readwrite', (st) => st.put(entry)).catch(() => {}),
      remove: (id) => run('readwrite', (st) => st.delete(id)).catch(() => {}),
      all: () => run('readonly', (st) => st.getAll()).catch(() => []),
    };
  })();

  /** Shows (and, when connected, sends again) what this person left in the outbox. */
  async function restoreOutbox(userId) {
    if (!userId) return;
    for (const e of await outbox.all()) {
      if (e.user !== userId || !e.room_id || typeof e.text !== 'string') continue;
      const r = roomState(e.room_id);
      if (r.pending.has(e.client_id) || [...r.messages.values()].some((m) => m.client_id === e.client_id)) continue;
      const p = { text: e.text, failed: false, error: '' };
      r.pending.set(e.client_id, p);
      if (r.id === state.current) {
        ui.messages.append(pendingEl(e.client_id, p));
        decorate(ui.messages.lastElementChild);
        updateEmpty();
      }
      if (isOpen()) sendFrame({ type: 'send', room_id: r.id, client_id: e.client_id, text: e.text });
    }
  }

  function retry(roomId, clientId) {
    const r = roomState(roomId);
    const p = r.pending.get(clientId);
    if (!p) return;
    p.failed = false;
    p.error = '';
    if (roomId === state.current) replacePendingEl(clientId, p);
    sendFrame({ type: 'send', room_id: roomId, client_id: clientId, text: p.text });
  }

  function pendingEl(clientId, p) {
    const node = el('article', `msg msg-own ${p.failed ? 'failed' : 'pending'}`);
    node.dataset.clientId = clientId;
    node.dataset.senderType = 'user';
    node.dataset.sender = `user:${state.user ? state.user.id : ''}`;
    node.dataset.time = String(Date.now());
    const bubble = el('div', 'bubble');
    bubble.append(el('div', 'body body-plain', p.text));
    bubble.append(el('span', 'stamp', p.failed ? 'Not sent' : isOpen() ? 'Sending…' : 'Waiting for the connection'));
    node.append(bubble);
    if (p.failed) {
      const note = el('div', 'send-error');
      note.append(el('span', '', p.error));
      const btn = el('button', 'link-btn retry', 'Retry');
      btn.type = 'button';
      const roomId = state.current;
      btn.addEventListener('click', () => retry(roomId, clientId));
      note.append(btn);
      node.append(note);
    }
    return node;
  }

  function replacePendingEl(clientId, p) {
    const old = ui.messages.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
    if (!old) return;
    const fresh = pendingEl(clientId, p);
    old.replaceWith(fresh);
    decorate(fresh);
  }

  // ---------------------------------------------------------------- files

  /** Adds files to those sent with the next message of the open room. */
  function stageFiles(list) {
    if (!state.current || !list || !list.length) return;
    const r = roomState(state.current);
    for (const file of list) {
      if (r.staged.length >= STAGED_MAX) {
        toast(`At most ${STAGED_MAX} files at once`);
        break;
      }
      r.staged.push(file);
    }
    renderStaged();
    ui.composer.focus();
  }

  function renderStaged() {
    const r = state.current ? roomState(state.current) : null;
    const files = r ? r.staged : [];
    for (const img of ui.staged.querySelectorAll('img')) URL.revokeObjectURL(img.src);
    ui.staged.replaceChildren(...files.map((file, i) => {
      const chip = el('div', 'staged-file');
      chip.setAttribute('role', 'listitem');
      if (file.type.startsWith('image/')) {
        const img = document.createElement('img');
        img.src = URL.createObjectURL(file);
        img.alt = '';
        chip.append(img);
      }
      chip.append(el('span', 'file-name', file.name), el('span', 'file-size', formatSize(file.size)));
      const rm = el('button', 'icon-btn', '×');
      rm.type = 'button';
      rm.setAttribute('aria-label', `Remove ${file.name}`);
      rm.addEventListener('click', () => {
        r.staged.splice(i, 1);
        renderStaged();
      });
      chip.append(rm);
      return chip;
    }));
    ui.staged.hidden = !files.length;
    updateSendButton();
  }

  /** Uploads one file with a progress bar; the stored message replaces it. Resolves when the
   *  upload has ended, however it ended. */
  function startUpload(r, file, caption, clientId) {
    return new Promise((done) => upload(r, file, caption, clientId, done));
  }

  function upload(r, file, caption, clientId, done) {
    clientId = clientId || newClientId();
    if (file.size > RESUMABLE_FROM) {
      uploadResumable(r, file, caption, clientId, done);
      return;
    }
    const u = { file, caption, loaded: 0, xhr: null, failed: false, error: '' };
    r.uploads.set(clientId, u);
    const form = new FormData();
    form.append('client_id', clientId);
    if (caption) form.append('caption', caption);
    form.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    u.xhr = xhr;
    xhr.open('POST', `/api/rooms/${encodeURIComponent(r.id)}/upload`);
    xhr.setRequestHeader('X-Webchat-CSRF', '1');
    xhr.responseType = 'json';
    xhr.upload.onprogress = (ev) => {
      u.loaded = ev.loaded;
      const bar = uploadNode(r, clientId)?.querySelector('progress');
      if (bar && ev.lengthComputable) {
        bar.max = ev.total;
        bar.value = ev.loaded;
      }
    };
    xhr.onloadend = done;
    xhr.onload = () => {
      const body = xhr.response || {};
      if (xhr.status === 200 && body.message) {
        addMessages(r, [body.message], true);
        return;
      }
      failUpload(r, clientId, body.error || `upload failed (${xhr.status})`);
    };
    xhr.onerror = () => failUpload(r, clientId, 'the connection was lost');
    xhr.onabort = () => {
      r.uploads.delete(clientId);
      uploadNode(r, clientId)?.remove();
      updateEmpty();
    };
    xhr.send(form);
    if (r.id === state.current) {
      ui.messages.append(uploadEl(r, clientId, u));
      decorate(ui.messages.lastElementChild);
      updateEmpty();
      scrollToBottom();
    }
  }

  /**
   * A large file in chunks that survive a dropped link: a chunk that fails is sent again from
   * what the server says has arrived, after a pause that grows; Cancel abandons the upload.
   */
  async function uploadResumable(r, file, caption, clientId, done) {
    const u = { file, caption, loaded: 0, xhr: null, failed: false, error: '', cancelled: false };
    r.uploads.set(clientId, u);
    if (r.id === state.current) {
      ui.messages.append(uploadEl(r, clientId, u));
      decorate(ui.messages.lastElementChild);
      updateEmpty();
      scrollToBottom();
    }
    const call = async (method, url, body) => {
      const headers = { 'X-Webchat-CSRF': '1' };
      if (body) headers['Content-Type'] = 'application/json';
      const res = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
      return { res, data: await res.json().catch(() => ({})) };
    };
    let id = null;
    try {
      const opened = await call('POST', `/api/rooms/${encodeURIComponent(r.id)}/uploads`,
        { name: file.name, size: file.size, caption: caption || undefined, client_id: clientId });
      if (!opened.res.ok) throw new Error(opened.data.error || `upload failed (${opened.res.status})`);
      id = opened.data.upload_id;
      const chunk = Math.min(opened.data.chunk_max || UPLOAD_CHUNK, UPLOAD_CHUNK);
      let received = 0;
      let misses = 0;
      while (received < file.size) {
        if (u.cancelled) throw new Error('cancelled');
        try {
          received = await putChunk(u, `/api/uploads/${id}?offset=${received}`, file.slice(received, received + chunk),
            received, (loaded) => showProgress(r, clientId, u, loaded));
          misses = 0;
        } catch (e) {
          if (u.cancelled || (e.status && e.status !== 408 && e.status < 500)) throw e;
          misses += 1;
          if (misses > RESUME_TRIES_MAX) throw new Error('the connection keeps dropping; try again later');
          await new Promise((ok) => setTimeout(ok, Math.min(RESUME_PAUSE_MAX_MS, 1000 * 2 ** (misses - 1))));
          const st = await call('GET', `/api/uploads/${id}`).catch(() => null);
          if (st && st.res.ok) received = st.data.received;
        }
      }
      const fin = await call('POST', `/api/uploads/${id}/finish`);
      if (!fin.res.ok) throw new Error(fin.data.error || `upload failed (${fin.res.status})`);
      addMessages(r, [fin.data.message], true);
    } catch (e) {
      if (u.cancelled) {
        if (id) call('DELETE', `/api/uploads/${id}`).catch(() => {});
        r.uploads.delete(clientId);
        uploadNode(r, clientId)?.remove();
        updateEmpty();
      } else {
        failUpload(r, clientId, e instanceof TypeError ? 'the connection was lost' : e.message);
      }
    } finally {
      done();
    }
  }

  /** One chunk; resolves with what the server now has (a 409 says where to go on). */
  function putChunk(u, url, blob, offset, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      u.xhr = xhr;
      xhr.open('PUT', url);
      xhr.setRequestHeader('X-Webchat-CSRF', '1');
      xhr.responseType = 'json';
      xhr.upload.onprogress = (ev) => progress(offset + ev.loaded);
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status === 200 || xhr.status === 409) {
          resolve(Number(body.received) || 0);
          return;
        }
        const err = new Error(body.error || `the chunk was refused (${xhr.status})`);
        err.status = xhr.status;
        reject(err);
      };
      xhr.onerror = () => reject(new Error('the connection was lost'));
      xhr.onabort = () => reject(new Error('cancelled'));
      xhr.send(blob);
    });
  }

  function showProgress(r, clientId, u, loaded) {
    u.loaded = loaded;
    const bar = uploadNode(r, clientId)?.querySelector('progress');
    if (bar) {
      bar.max = u.file.size || 1;
      bar.value = loaded;
    }
  }

  function uploadNode(r, clientId) {
    if (r.id !== state.current) return null;
    return ui.messages.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
  }

  function failUpload(r, clientId, error) {
    const u = r.uploads.get(clientId);
    if (!u) return;
    u.failed = true;
    u.error = error;
    u.xhr = null;
    const old = uploadNode(r, clientId);
    if (old) {
      const fresh = uploadEl(r, clientId, u);
      old.replaceWith(fresh);
      decorate(fresh);
    }
  }

  function uploadEl(r, clientId, u) {
    const node = el('article', `msg msg-own upload ${u.failed ? 'failed' : 'pending'}`);
    node.dataset.clientId = clientId;
    node.dataset.senderType = 'user';
    node.dataset.sender = `user:${state.user ? state.user.id : ''}`;
    node.dataset.time = String(Date.now());
    const bubble = el('div', 'bubble');
    bubble.append(el('div', 'body body-plain', u.caption || ''));
    bubble.append(el('div', 'file-name', `${u.file.name} · ${formatSize(u.file.size)}`));
    if (!u.failed) {
      const bar = document.createElement('progress');
      bar.max = u.file.size || 1;
      bar.value = u.loaded;
      bar.setAttribute('aria-label', `Uploading ${u.file.name}`);
      bubble.append(bar);
    }
    const actions = el('div', u.failed ? 'send-error' : 'upload-actions');
    if (u.failed) actions.append(el('span', '', u.error));
    const cancel = el('button', 'link-btn upload-cancel', u.failed ? 'Remove' : 'Cancel');
    cancel.type = 'button';
    cancel.addEventListener('click', () => {
      u.cancelled = true;
      if (u.xhr) u.xhr.abort();
      else {
        r.uploads.delete(clientId);
        node.remove();
        updateEmpty();
      }
    });
    if (u.failed) {
      const again = el('button', 'link-btn retry', 'Retry');
      again.type = 'button';
      again.addEventListener('click', () => {
        r.uploads.delete(clientId);
        node.remove();
        startUpload(r, u.file, u.caption, clientId);
      });
      actions.append(again);
    }
    actions.append(cancel);
    bubble.append(actions);
    node.append(bubble);
    return node;
  }

  /** A UUID; `crypto.randomUUID` exists only in secure contexts (HTTPS or localhost). */
  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // ---------------------------------------------------------------- streams, thinking, typing

  function updateStreamEl(id, s) {
    const stick = atBottom();
    let node = ui.messages.querySelector(`[data-stream-id="${CSS.escape(id)}"]`);
    if (!node) {
      node = el('article', 'msg msg-agent streaming');
      node.dataset.streamId = id;
      node.dataset.senderType = 'agent';
      node.dataset.sender = `agent:${s.agent}`;
      node.dataset.time = String(Date.now());
      node.append(senderEl(s.agent, s.agent));
      const bubble = el('div', 'bubble');
      const status = el('div', 'stream-status');
      status.setAttribute('role', 'status');
      bubble.append(el('div', 'tools'), status, el('div', 'body body-plain'));
      node.append(bubble);
      // Before any pending sends, after everything stored.
      const firstPending = ui.messages.querySelector('[data-client-id]');
      ui.messages.insertBefore(node, firstPending);
      decorate(node);
      updateEmpty();
    }
    node.classList.toggle('finished', s.ended);
    node.setAttribute('aria-busy', s.ended ? 'false' : 'true');
    node.querySelector('.body').textContent = s.text;
    const status = node.querySelector('.stream-status');
    status.replaceChildren();
    if (s.status) {
      status.append(el('span', 'dots'), el('span', '', 'Model busy, retrying…'));
      status.title = s.status; // e.g. "model unavailable (429: …); retry 1 in 2s"
    }
    node.querySelector('.tools').replaceChildren(...s.tools.map((t) => {
      const chip = el('span', `tool ${t.done ? 'tool-done' : 'tool-running'}`);
      chip.append(el('span', 'tool-name', t.name));
      if (t.summary) chip.append(el('span', 'tool-summary', t.summary));
      chip.title = t.summary ? `${t.name}: ${t.summary}` : t.name;
      const detail = toolDetail(t);
      if (!detail) return chip;
      // Unfolds to the call's arguments and (once done) its output; stays open across updates.
      const d = el('details', 'tool-live');
      d.open = !!t.open;
      const summary = el('summary');
      summary.append(chip);
      d.append(summary, detail);
      d.addEventListener('toggle', () => { t.open = d.open; });
      return d;
    }));
    if (stick) scrollToBottom();
    updateActivity();
  }

  function setThinking(r, on) {
    clearTimeout(r.thinkingTimer);
    r.thinking = on;
    if (on) {
      r.thinkingTimer = setTimeout(() => setThinking(r, false), THINKING_EXPIRE_MS);
    }
    if (r.id === state.current) updateActivity();
  }

  /** The line above the composer: who is thinking or typing; and the Stop button. */
  function updateActivity() {
    const r = state.current ? roomState(state.current) : null;
    const live = !!r && [...r.streams.values()].some((s) => !s.ended);
    const thinking = !!r && r.thinking && !live;
    const typers = r ? [...r.typers.values()].map((t) => t.name) : [];
    ui.activity.replaceChildren();
    if (thinking) {
      ui.activity.append(el('span', 'dots'), el('span', '', `${agentName(r.id)} is thinking…`));
    } else if (typers.length) {
      const who = typers.length === 1 ? `${typers[0]} is` : typers.length === 2 ? `${typers[0]} and ${typers[1]} are` : 'Several people are';
      ui.activity.append(el('span', 'dots'), el('span', '', `${who} typing…`));
    }
    ui.activity.classList.toggle('visible', ui.activity.childElementCount > 0);
    ui.stop.hidden = !(live || thinking);
  }

  function onComposerInput() {
    updateMentions();
    autoGrow();
    updateSendButton();
    const t = state.typing;
    if (!state.current || !isOpen()) return;
    if (!ui.composer.value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (!t.active || now - t.lastSent >= TYPING_REFRESH_MS) {
      sendFrame({ type: 'typing', room_id: state.current, is_typing: true });
      t.active = true;
      t.room = state.current;
      t.lastSent = now;
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  // ---------------------------------------------------------------- @mentions

  const mention = { list: null, items: [], index: 0, start: 0 };

  /** The `@word` being typed just before the caret, if any. */
  function mentionQuery() {
    const c = ui.composer;
    const before = c.value.slice(0, c.selectionStart);
    const m = before.match(/(^|[^\w@])@([\w-]*)$/);
    return m ? { start: before.length - m[2].length - 1, word: m[2].toLowerCase() } : null;
  }

  function updateMentions() {
    const room = state.rooms.find((x) => x.id === state.current);
    const q = mentionQuery();
    const agents = room && q ? (room.agents || []).filter((a) =>
      a.folder.toLowerCase().startsWith(q.word) || a.name.toLowerCase().startsWith(q.word)) : [];
    if (!agents.length) {
      closeMentions();
      return;
    }
    mention.items = agents;
    mention.start = q.start;
    mention.index = Math.min(mention.index, agents.length - 1);
    if (!mention.list) {
      mention.list = el('ul', 'mention-list');
      mention.list.id = 'mention-list';
      mention.list.setAttribute('role', 'listbox');
      mention.list.setAttribute('aria-label', 'Agents to mention');
      ui.form.style.position = 'relative';
      ui.form.append(mention.list);
      ui.composer.setAttribute('aria-controls', 'mention-list');
    }
    mention.list.style.bottom = `${ui.form.offsetHeight}px`;
    mention.list.style.left = `${ui.composer.offsetLeft}px`;
    mention.list.replaceChildren(...agents.map((a, i) => {
      const li = el('li', '');
      li.id = `mention-${i}`;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === mention.index));
      li.dataset.folder = a.folder;
      const star = a.id === room.prime_agent_id ? ' ★' : '';
      li.append(el('strong', '', a.name + star), el('span', 'muted', ` @${a.folder}`));
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault();
        pickMention(i);
      });
      return li;
    }));
    ui.composer.setAttribute('aria-activedescendant', `mention-${mention.index}`);
  }

  function closeMentions() {
    if (mention.list) mention.list.remove();
    mention.list = null;
    mention.items = [];
    mention.index = 0;
    ui.composer.removeAttribute('aria-activedescendant');
  }

  function pickMention(i) {
    const a = mention.items[i];
    if (!a) return;
    const c = ui.composer;
    const end = c.selectionStart;
    const insert = `@${a.folder} `;
    c.value = c.value.slice(0, mention.start) + insert + c.value.slice(end);
    const caret = mention.start + insert.length;
    c.setSelectionRange(caret, caret);
    closeMentions();
    onComposerInput();
    c.focus();
  }

  /** Keys while the mention list is open; true if the key was used. */
  function mentionKey(ev) {
    if (!mention.list) return false;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      const n = mention.items.length;
      mention.index = (mention.index + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      updateMentions();
      return true;
    }
    if (ev.key === 'Enter' || ev.key === 'Tab') {
      pickMention(mention.index);
      return true;
    }
    if (ev.key === 'Escape') {
      closeMentions();
      return true;
    }
    return false;
  }

  function stopTyping() {
    const t = state.typing;
    clearTimeout(t.idleTimer);
    if (t.active && t.room) sendFrame({ type: 'typing', room_id: t.room, is_typing: false });
    t.active = false;
  }

  // ---------------------------------------------------------------- composer and scrolling

  function autoGrow() {
    // CSSOM assignments are allowed by the CSP (only style attributes in markup are not).
    const c = ui.composer;
    c.style.height = 'auto';
    const borders = c.offsetHeight - c.clientHeight;
    c.style.height = `${Math.min(c.scrollHeight + borders, 240)}px`;
  }

  function updateSendButton() {
    const staged = state.current ? roomState(state.current).staged.length : 0;
    ui.send.disabled = !state.current || (!ui.composer.value.trim() && !staged) || (staged > 0 && !isOpen());
  }

  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < AT_BOTTOM_PX;
  }

  function scrollToBottom(smooth) {
    ui.messages.scrollTo({ top: ui.messages.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    ui.newPill.hidden = true;
  }

  // ---------------------------------------------------------------- new agent

  function openAgentDialog() {
    ui.agentForm.reset();
    ui.agentError.hidden = true;
    ui.agentCreate.disabled = false;
    ui.dialog.showModal();
    ui.agentName.focus();
  }

  /** ✨ Asks the host's model for a name and instructions from the one-line description. */
  async function draftAgent() {
    const prompt = $('agent-describe').value.trim();
    if (!prompt) {
      $('agent-describe').focus();
      return;
    }
    const btn = $('agent-draft');
    btn.disabled = true;
    btn.textContent = '✨ Drafting…';
    ui.agentError.hidden = true;
    try {
      const res = await fetch('/api/agents/draft', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Webchat-CSRF': '1' },
        body: JSON.stringify({ prompt }),
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(data.error || `The server answered ${res.status}.`);
      ui.agentName.value = data.name || '';
      ui.agentInstructions.value = data.instructions || '';
    } catch (e) {
      ui.agentError.textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
      ui.agentError.hidden = false;
    } finally {
      btn.disabled = false;
      btn.textContent = '✨ Draft';
    }
  }

  async function createAgent(ev) {
    ev.preventDefault();
    ui.agentError.hidden = true;
    ui.agentCreate.disabled = true;
    const body = { name: ui.agentName.value, withRoom: true };
    const instructions = ui.agentInstructions.value.trim();
    if (instructions) body.instructions = instructions;
    try {
      const res = await fetch('/api/agents', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Webchat-CSRF': '1' },
        body: JSON.stringify(body),
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(data.error || `The server answered ${res.status}.`);
      ui.dialog.close();
      if (data.roomId) {
        openNewRoom(data.roomId).catch(() => toast('The agent was created; reload to see its room.'));
      }
    } catch (e) {
      ui.agentError.textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
      ui.agentError.hidden = false;
    } finally {
      ui.agentCreate.disabled = false;
    }
  }

  /** Opens a just-created room; the `rooms` frame usually lists it already, else ask for the list. */
  async function openNewRoom(id) {
    if (state.rooms.some((x) => x.id === id)) {
      selectRoom(id);
      return;
    }
    state.wantRoom = id;
    const res = await fetch('/api/rooms');
    if (res.ok && state.wantRoom === id) setRooms(await res.json());
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function initials(name) {
    const words = String(name || '').trim().split(/\s+/).slice(0, 2);
    return words.map((w) => [...w][0] || '').join('').toUpperCase() || '?';
  }

  /** One of eight avatar colours, stable for a key. */
  function hue(key) {
    let h = 0;
    for (const c of String(key)) h = (h * 31 + c.codePointAt(0)) >>> 0;
    return h % 8;
  }

  function dayKey(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  }

  function dayLabel(ms) {
    const d = new Date(ms);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(ms) === dayKey(today.getTime())) return 'Today';
    if (dayKey(ms) === dayKey(yesterday.getTime())) return 'Yesterday';
    return (d.getFullYear() !== today.getFullYear() ? DAY_YEAR : DAY).format(d);
  }

  function formatSize(n) {
    if (typeof n !== 'number') return '';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function toast(text) {
    const t = el('div', 'toast');
    t.setAttribute('role', 'alert');
    t.append(el('span', '', text));
    const close = el('button', 'icon-btn', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss');
    close.addEventListener('click', () => t.remove());
    t.append(close);
    ui.toasts.append(t);
    setTimeout(() => t.remove(), 6000);
  }

  function openDrawer() {
    ui.app.classList.add('drawer-open');
    ui.scrim.hidden = false;
    ui.menuToggle.setAttribute('aria-expanded', 'true');
    const active = ui.rooms.querySelector('[aria-current]') || ui.rooms.querySelector('button');
    if (active) active.focus();
  }

  function closeDrawer() {
    if (!ui.app.classList.contains('drawer-open')) return;
    ui.app.classList.remove('drawer-open');
    ui.scrim.hidden = true;
    ui.menuToggle.setAttribute('aria-expanded', 'false');
  }

  // ---------------------------------------------------------------- wiring

  ui.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendCurrent();
  });
  ui.composer.addEventListener('keydown', (ev) => {
    if (!ev.isComposing && mentionKey(ev)) {
      ev.preventDefault();
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendCurrent();
    }
  });
  ui.composer.addEventListener('input', onComposerInput);
  ui.composer.addEventListener('blur', closeMentions);
  ui.roomSettings.addEventListener('click', () => {
    if (state.current) window.PincerRooms.open(state.current, state.user);
  });
  ui.newRoom.addEventListener('click', () => {
    closeDrawer();
    window.PincerRooms.openNew((id) => openNewRoom(id));
  });
  ui.attach.addEventListener('click', () => ui.fileInput.click());
  ui.fileInput.addEventListener('change', () => {
    stageFiles([...ui.fileInput.files]);
    ui.fileInput.value = '';
  });
  ui.composer.addEventListener('paste', (ev) => {
    const files = ev.clipboardData ? [...ev.clipboardData.files] : [];
    if (!files.length) return;
    ev.preventDefault();
    stageFiles(files);
  });
  ui.main.addEventListener('dragover', (ev) => {
    if (!state.current || !ev.dataTransfer || ![...ev.dataTransfer.types].includes('Files')) return;
    ev.preventDefault();
    ui.main.classList.add('dropping');
  });
  ui.main.addEventListener('dragleave', (ev) => {
    if (!ui.main.contains(ev.relatedTarget)) ui.main.classList.remove('dropping');
  });
  ui.main.addEventListener('drop', (ev) => {
    ui.main.classList.remove('dropping');
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    stageFiles([...ev.dataTransfer.files]);
  });
  ui.lightboxClose.addEventListener('click', () => ui.lightbox.close());
  ui.lightbox.addEventListener('click', (ev) => {
    if (ev.target === ui.lightbox) ui.lightbox.close();
  });
  ui.stop.addEventListener('click', () => {
    if (state.current) sendFrame({ type: 'stop', room_id: state.current });
  });
  ui.messages.addEventListener('scroll', () => {
    if (state.current && ui.messages.scrollTop < OLDER_AT_PX) loadOlder(roomState(state.current));
    if (atBottom()) ui.newPill.hidden = true;
  });
  ui.newPill.addEventListener('click', () => scrollToBottom(true));
  ui.reconnectNow.addEventListener('click', reconnectNow);
  ui.bannerClose.addEventListener('click', () => {
    ui.banner.hidden = true;
    sessionStorage.setItem(STORE_BANNER, '1');
  });
  ui.menuToggle.addEventListener('click', () => {
    if (ui.app.classList.contains('drawer-open')) closeDrawer();
    else openDrawer();
  });
  ui.scrim.addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') closeDrawer();
    if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') && state.rooms.length) {
      // The previous or next room, in the order the list shows them.
      ev.preventDefault();
      const ids = [...ui.rooms.querySelectorAll('li')].map((li) => li.dataset.roomId);
      const at = ids.indexOf(state.current);
      const next = ids[(at + (ev.key === 'ArrowDown' ? 1 : ids.length - 1)) % ids.length];
      if (next) selectRoom(next);
      return;
    }
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 'k') {
      ev.preventDefault();
      openSearch();
    }
  });
  ui.openSearch.addEventListener('click', openSearch);
  $('search-close').addEventListener('click', () => ui.searchDialog.close());
  ui.searchInput.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, SEARCH_DEBOUNCE_MS);
  });
  ui.searchInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      clearTimeout(searchTimer);
      runSearch();
    } else if (ev.key === 'ArrowDown') {
      const first = ui.searchResults.querySelector('button');
      if (first) {
        ev.preventDefault();
        first.focus();
      }
    }
  });
  // Up and down move through the results; up from the first goes back to the words.
  ui.searchResults.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const buttons = [...ui.searchResults.querySelectorAll('button')];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    ev.preventDefault();
    const next = ev.key === 'ArrowDown' ? buttons[at + 1] : buttons[at - 1] || ui.searchInput;
    if (next) next.focus();
  });
  ui.newAgent.addEventListener('click', () => {
    closeDrawer();
    openAgentDialog();
  });
  ui.agentCancel.addEventListener('click', () => ui.dialog.close());
  ui.agentForm.addEventListener('submit', createAgent);
  $('agent-draft').addEventListener('click', draftAgent);
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    document.title = document.title.replace(/^• /, '');
    reconnectNow();
  });

  ui.openPeople.addEventListener('click', () => {
    closeDrawer();
    window.PincerAccess.openPeople(state.user);
  });
  ui.signOut.addEventListener('click', () => window.PincerAccess.signOut());
  window.PincerModels.init(ui.openModels);
  window.PincerPins.init({ currentRoom: () => state.current, jumpTo, toast });
  ui.openModels.addEventListener('click', closeDrawer);

  updateEmpty();
  // Signed in (or shown the sign-in / invitation screen until then), then connect.
  window.PincerAccess.gate().finally(() => {
    window.PincerDevice.start({
      currentRoom: () => state.current,
      send: sendFrame,
      selectRoom: (id) => selectRoom(id),
    });
    // Opened from a notification: that room.
    // Offline after a reload: the last room list and what waits in the outbox, until connected.
    if (!state.rooms.length) {
      try {
        const cached = JSON.parse(localStorage.getItem(STORE_ROOMS) || '[]');
        if (Array.isArray(cached) && cached.length) setRooms(cached);
      } catch { /* no usable cache */ }
      restoreOutbox(localStorage.getItem(STORE_USER));
    }
    const wanted = new URLSearchParams(location.search).get('room');
    if (wanted) {
      state.wantRoom = wanted;
      history.replaceState(null, '', '/');
    }
    connect();
  });
})();
