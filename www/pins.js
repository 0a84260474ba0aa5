// pincer — messages pinned in a room: the Pin / Unpin button on each message, the pin button in
// the room's header (with how many there are) and the list it opens, from which a pinned message
// is jumped to. The pins are the room's, the same for everyone in it; the server tells every page
// in the room with a `pins` frame when they change.
//
// It talks only to the HTTP API (docs/API.md "Pinned messages").

'use strict';

window.PincerPins = (() => {
  const $ = (id) => document.getElementById(id);
  const { el, api } = window.PincerAccess;

  const byRoom = new Map(); // room id -> [pin], newest first
  let hooks = null; // {currentRoom(), jumpTo(roomId, seq, id), toast(text)}

  const path = (roomId, id) => `/api/rooms/${encodeURIComponent(roomId)}/pins${id ? `/${encodeURIComponent(id)}` : ''}`;

  function pinned(roomId, id) {
    return (byRoom.get(roomId) || []).some((p) => p.message_id === id);
  }

  /** The room's pins as the server has them now; re-renders what shows them. */
  function set(roomId, pins) {
    byRoom.set(roomId, Array.isArray(pins) ? pins : []);
    if (roomId !== hooks.currentRoom()) return;
    renderHeader();
    for (const node of document.querySelectorAll('#messages .msg[data-id]')) mark(node);
    if ($('pins-dialog').open) renderList();
  }

  /** Shows a room's pins, asking the server the first time the room is opened. */
  async function show(roomId) {
    renderHeader();
    if (!roomId || byRoom.has(roomId)) return;
    try {
      const data = await api('GET', path(roomId));
      set(roomId, data.pins);
    } catch {
      // No access, or offline: no pins shown; the next `pins` frame fills them in.
    }
  }

  function renderHeader() {
    const pins = byRoom.get(hooks.currentRoom()) || [];
    $('open-pins').hidden = !pins.length;
    $('pins-count').textContent = pins.length ? String(pins.length) : '';
    $('open-pins').setAttribute('aria-label', `Pinned messages: ${pins.length}`);
  }

  /** A message node shows whether it is pinned (its button says what a click does). */
  function mark(node) {
    const roomId = hooks.currentRoom();
    const on = pinned(roomId, node.dataset.id);
    node.classList.toggle('pinned', on);
    const b = node.querySelector('.msg-pin');
    if (b) {
      b.textContent = on ? 'Unpin' : 'Pin';
      b.setAttribute('aria-label', on ? 'Unpin this message' : 'Pin this message for everyone in the room');
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }

  /** The Pin / Unpin button of a stored message. */
  function button(m) {
    const b = el('button', 'link-btn msg-pin', pinned(m.room_id, m.id) ? 'Unpin' : 'Pin');
    b.type = 'button';
    b.addEventListener('click', async () => {
      const on = pinned(m.room_id, m.id);
      try {
        const data = await api(on ? 'DELETE' : 'PUT', path(m.room_id, m.id));
        set(m.room_id, data.pins);
      } catch (e) {
        hooks.toast(e.message || 'Could not change the pin');
      }
    });
    return b;
  }

  function renderList() {
    const roomId = hooks.currentRoom();
    const pins = byRoom.get(roomId) || [];
    const list = $('pins-list');
    if (!pins.length) {
      list.replaceChildren(el('li', 'muted', 'Nothing is pinned here.'));
      return;
    }
    list.replaceChildren(...pins.map((p) => {
      const li = el('li');
      const go = el('button', 'pin-item');
      go.type = 'button';
      const m = p.message || {};
      go.append(
        el('strong', '', String(m.sender || '')),
        el('span', 'muted', ` · ${new Date(m.created_at).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}`),
        el('div', 'pin-text', String(m.text || (m.files && m.files.length ? m.files.map((f) => f.name).join(', ') : '')).slice(0, 300)),
        el('div', 'muted', `Pinned by ${p.pinned_by_name || p.pinned_by}`),
      );
      go.addEventListener('click', () => {
        $('pins-dialog').close();
        hooks.jumpTo(roomId, p.seq, p.message_id);
      });
      li.append(go);
      return li;
    }));
  }

  function init(h) {
    hooks = h;
    $('open-pins').addEventListener('click', () => {
      renderList();
      $('pins-dialog').showModal();
    });
    $('pins-close').addEventListener('click', () => $('pins-dialog').close());
  }

  return { init, set, show, button, mark };
})();
