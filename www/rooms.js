// pincer — rooms with several agents: the room settings dialog (name, who answers, each agent's
// engage mode, ★ the prime agent, add and remove agents, put the room away, export), the New room
// dialog (a room made with agents already there), and an agent's name and instructions.
//
// It talks only to the HTTP API (docs/API.md "Rooms with several agents"); the server checks
// every change and pushes the new room list to every page, which app.js re-renders.

'use strict';

window.PincerRooms = (() => {
  const $ = (id) => document.getElementById(id);
  const MODES = [
    ['pattern', 'Room rules'],
    ['mention', 'Only when @mentioned'],
    ['mention-sticky', 'When @mentioned, then keeps the conversation'],
  ];

  // The page's helpers: elements, and API calls that throw the server's error.
  const { el, api } = window.PincerAccess;

  const room = (id) => `/api/rooms/${encodeURIComponent(id)}`;

  let current = null; // {roomId, user}

  function showError(e) {
    const node = $('room-error');
    node.textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
    node.hidden = false;
  }

  /** Runs a change, then shows the room as the server now has it. */
  async function change(fn) {
    $('room-error').hidden = true;
    try {
      await fn();
    } catch (e) {
      showError(e);
    }
    await render();
  }

  async function render() {
    if (!current) return;
    const [rooms, agents] = await Promise.all([api('GET', '/api/rooms'), api('GET', '/api/agents')])
      .catch((e) => { showError(e); return [null, null]; });
    if (!rooms) return;
    const r = rooms.find((x) => x.id === current.roomId);
    if (!r) {
      $('room-dialog').close();
      return;
    }
    const owner = !!(current.user && current.user.owner);
    $('room-name').value = r.name;
    $('room-default').value = r.engage_default || 'broadcast';
    $('room-archived').checked = !!r.archived;
    $('room-pinned').checked = !!r.pinned;
    $('room-export-md').href = `${room(r.id)}/export?format=md`;
    $('room-export-json').href = `${room(r.id)}/export?format=json`;
    $('room-delete').hidden = !owner;
    const list = $('room-agents');
    list.replaceChildren();
    for (const a of r.agents || []) {
      const li = el('li', 'room-agent');
      li.dataset.agent = a.id;
      const prime = el('button', `icon-btn star${r.prime_agent_id === a.id ? ' on' : ''}`, '★');
      prime.type = 'button';
      prime.disabled = !owner;
      prime.setAttribute('aria-pressed', String(r.prime_agent_id === a.id));
      prime.setAttribute('aria-label', `${a.name} answers what mentions nobody`);
      prime.title = r.prime_agent_id === a.id ? 'Prime agent: answers what mentions nobody' : 'Make prime';
      prime.addEventListener('click', () => change(() => (r.prime_agent_id === a.id
        ? api('DELETE', `${room(r.id)}/prime`)
        : api('PUT', `${room(r.id)}/prime`, { agentId: a.id }))));
      const name = el('span', 'room-agent-name');
      name.append(el('strong', '', a.name), el('span', 'muted', ` @${a.folder}`));
      const mode = el('select', 'room-agent-mode');
      mode.setAttribute('aria-label', `When ${a.name} answers`);
      for (const [value, label] of MODES) {
        const o = el('option', '', label);
        o.value = value;
        mode.append(o);
      }
      mode.value = a.engage_mode || 'pattern';
      mode.addEventListener('change', () => change(() => api('PUT', `${room(r.id)}/agents/${encodeURIComponent(a.id)}`,
        { engageMode: mode.value, pattern: a.engage_pattern || '.' })));
      const edit = el('button', 'link-btn', 'Edit');
      edit.type = 'button';
      edit.setAttribute('aria-label', `Edit ${a.name}`);
      edit.addEventListener('click', () => openAgent(a.id));
      const remove = el('button', 'link-btn danger', 'Remove');
      remove.type = 'button';
      remove.setAttribute('aria-label', `Remove ${a.name} from the room`);
      remove.addEventListener('click', () => change(() => api('DELETE', `${room(r.id)}/agents/${encodeURIComponent(a.id)}`)));
      li.append(prime, name, mode, edit, remove);
      list.append(li);
    }
    const add = $('room-add-agent');
    add.replaceChildren(el('option', '', 'Add an agent…'));
    add.firstChild.value = '';
    const inRoom = new Set((r.agents || []).map((a) => a.id));
    for (const a of agents || []) {
      if (inRoom.has(a.id)) continue;
      const o = el('option', '', a.name);
      o.value = a.id;
      add.append(o);
    }
    add.disabled = add.options.length === 1;
  }

  /** Opens the settings of a room for `user` (as `ready` described them). */
  function open(roomId, user) {
    current = { roomId, user };
    $('room-error').hidden = true;
    $('room-dialog').showModal();
    render();
  }

  function wire() {
    $('room-close').addEventListener('click', () => $('room-dialog').close());
    $('room-dialog').addEventListener('close', () => { current = null; });
    $('room-name').addEventListener('change', () => change(() => api('PATCH', room(current.roomId), { name: $('room-name').value })));
    $('room-default').addEventListener('change', () => change(() => api('PATCH', room(current.roomId), { engageDefault: $('room-default').value })));
    $('room-archived').addEventListener('change', () => change(() => api('PATCH', room(current.roomId), { archived: $('room-archived').checked })));
    $('room-pinned').addEventListener('change', () => change(() => api('PATCH', room(current.roomId), { pinned: $('room-pinned').checked })));
    $('room-add-agent').addEventListener('change', () => {
      const id = $('room-add-agent').value;
      if (id) change(() => api('POST', `${room(current.roomId)}/agents`, { agentId: id }));
    });
    $('room-delete').addEventListener('click', async () => {
      if (!current || !window.confirm('Delete this room and all its messages? Its agents stay.')) return;
      try {
        await api('DELETE', room(current.roomId));
        $('room-dialog').close();
      } catch (e) {
        showError(e);
      }
    });
    $('new-room-form').addEventListener('submit', createRoom);
    $('agent-edit-form').addEventListener('submit', saveAgent);
    $('agent-edit-cancel').addEventListener('click', () => $('agent-edit-dialog').close());
    $('agent-delete').addEventListener('click', deleteAgent);
    $('agent-edit-provider').addEventListener('change', fillModels);
    $('new-room-cancel').addEventListener('click', () => $('new-room-dialog').close());
  }

  // ---------------------------------------------------------------- one agent

  let editing = null; // agent id
  let models = null; // GET /api/models, for the owner and admins
  let loaded = { provider: null, model: null }; // the agent's choice as opened

  async function openAgent(id) {
    editing = id;
    $('agent-edit-error').hidden = true;
    $('agent-delete').hidden = !(current && current.user && current.user.owner);
    $('agent-edit-dialog').showModal();
    try {
      const a = await api('GET', `/api/agents/${encodeURIComponent(id)}`);
      $('agent-edit-title').textContent = a.name;
      $('agent-edit-name').value = a.name;
      $('agent-edit-instructions').value = a.instructions || '';
      $('agent-edit-meta').textContent = `@${a.folder} · ${a.provider}${a.model ? ` · ${a.model}` : ''}`;
      await renderModels(a);
      await renderTasks(id);
    } catch (e) {
      $('agent-edit-error').textContent = e.message;
      $('agent-edit-error').hidden = false;
    }
  }

  /** The provider and model picker (the owner and admins): the host's endpoints and their models. */
  async function renderModels(a) {
    const box = $('agent-edit-model-box');
    models = await api('GET', '/api/models').catch(() => null);
    box.hidden = !models;
    if (!models) return;
    // The API shows the host default when the agent has none of its own: compare with it.
    loaded = { provider: a.provider === models.default_provider && !a.model ? '' : a.provider, model: a.model || '' };
    const sel = $('agent-edit-provider');
    sel.replaceChildren(el('option', '', `Host default (${models.default_provider})`));
    sel.firstChild.value = '';
    for (const p of models.providers) {
      const o = el('option', '', p.name ? `${p.name} · ${p.endpoint}` : p.endpoint ? `${p.provider} · ${p.endpoint}` : p.provider);
      o.value = p.provider;
      sel.append(o);
    }
    sel.value = loaded.provider || '';
    $('agent-edit-model').value = a.model || '';
    fillModels();
  }

  function fillModels() {
    const chosen = $('agent-edit-provider').value || (models && models.default_provider);
    const p = models && models.providers.find((x) => x.provider === chosen);
    $('agent-edit-models').replaceChildren(...(p ? p.models : []).map((m) => {
      const o = el('option');
      o.value = m;
      return o;
    }));
    const note = $('agent-edit-model-note');
    note.textContent = !p ? '' : p.error ? `Could not list its models: ${p.error}`
      : `${p.models.length} model(s) offered${p.default_model ? `; default ${p.default_model}` : ''}`;
  }

  /** The agent's scheduled tasks, each with what can be done to it. */
  async function renderTasks(id) {
    const list = $('agent-tasks');
    const tasks = await api('GET', `/api/agents/${encodeURIComponent(id)}/tasks`).catch(() => []);
    const live = tasks.filter((t) => t.status === 'pending' || t.status === 'paused');
    if (!live.length) {
      list.replaceChildren(el('li', 'muted', 'None. Ask the agent to remind you of something, or to do a job every day.'));
      return;
    }
    list.replaceChildren(...live.map((t) => {
      const li = el('li', 'task');
      li.dataset.series = t.series_id;
      li.append(el('span', 'task-prompt', t.prompt));
      const when = t.status === 'paused' ? 'paused'
        : t.next_run ? `next ${new Date(t.next_run).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}` : '';
      li.append(el('span', 'task-when', [when, t.recurrence ? `repeats ${t.recurrence}` : ''].filter(Boolean).join(' · ')));
      const actions = t.status === 'paused' ? ['resume', 'cancel'] : ['pause', 'cancel'];
      for (const action of actions) {
        const b = el('button', `link-btn${action === 'cancel' ? ' danger' : ''}`, action[0].toUpperCase() + action.slice(1));
        b.type = 'button';
        b.dataset.action = action;
        b.addEventListener('click', async () => {
          try {
            await api('POST', `/api/agents/${encodeURIComponent(id)}/tasks/${encodeURIComponent(t.series_id)}/${action}`);
          } catch (e) {
            $('agent-edit-error').textContent = e.message;
            $('agent-edit-error').hidden = false;
          }
          await renderTasks(id);
        });
        li.append(b);
      }
      return li;
    }));
  }

  async function deleteAgent() {
    const name = $('agent-edit-name').value;
    if (!window.confirm(`Delete ${name}? Its containers stop and it leaves every room; its folder and conversations are kept in an archive on the server.`)) return;
    try {
      await api('DELETE', `/api/agents/${encodeURIComponent(editing)}`);
      $('agent-edit-dialog').close();
      await render();
    } catch (e) {
      $('agent-edit-error').textContent = e.message;
      $('agent-edit-error').hidden = false;
    }
  }

  async function saveAgent(ev) {
    ev.preventDefault();
    try {
      const body = { name: $('agent-edit-name').value, instructions: $('agent-edit-instructions').value };
      if (models) {
        const provider = $('agent-edit-provider').value;
        const model = $('agent-edit-model').value.trim();
        if (provider !== (loaded.provider || '') || model !== (loaded.model || '')) {
          body.provider = provider || null;
          body.model = model || null;
        }
      }
      await api('PATCH', `/api/agents/${encodeURIComponent(editing)}`, body);
      $('agent-edit-dialog').close();
      await render();
    } catch (e) {
      $('agent-edit-error').textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
      $('agent-edit-error').hidden = false;
    }
  }

  // ---------------------------------------------------------------- new room

  let onCreated = null;

  /** Opens the New room dialog; `created(roomId)` is called with the new room. */
  async function openNew(created) {
    onCreated = created;
    $('new-room-error').hidden = true;
    $('new-room-name').value = '';
    const box = $('new-room-agents');
    box.replaceChildren();
    $('new-room-dialog').showModal();
    let agents = [];
    try {
      agents = await api('GET', '/api/agents');
    } catch (e) {
      $('new-room-error').textContent = e.message;
      $('new-room-error').hidden = false;
    }
    for (const a of agents) {
      const label = el('label', 'check');
      const cb = el('input');
      cb.type = 'checkbox';
      cb.value = a.id;
      label.append(cb, el('span', '', ` ${a.name}`));
      box.append(label);
    }
    $('new-room-name').focus();
  }

  async function createRoom(ev) {
    ev.preventDefault();
    const ids = [...$('new-room-agents').querySelectorAll('input:checked')].map((c) => c.value);
    try {
      const res = await api('POST', '/api/rooms', {
        name: $('new-room-name').value,
        agents: ids.map((id) => ({ kind: 'existing', id })),
      });
      $('new-room-dialog').close();
      if (onCreated) onCreated(res.room.id);
    } catch (e) {
      $('new-room-error').textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
      $('new-room-error').hidden = false;
    }
  }

  document.addEventListener('DOMContentLoaded', wire);
  return { open, openNew };
})();
