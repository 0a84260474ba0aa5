// pincer — who is using the page: the sign-in screen, accepting an invitation, signing out, and
// the People page (invitations, roles, devices) for the owner and admins.
//
// It talks only to the HTTP API (docs/API.md "People"); the session lives in an HttpOnly cookie
// the page never sees. app.js calls `PincerAccess.gate()` before it connects, and again when the
// server refuses it.

'use strict';

window.PincerAccess = (() => {
  const $ = (id) => document.getElementById(id);
  const CSRF = { 'X-Webchat-CSRF': '1' };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function api(method, path, body) {
    const opts = { method, headers: { ...CSRF } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error(data.error || `The server answered ${res.status}.`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function showError(node, e) {
    node.textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
    node.hidden = false;
  }

  function when(ms) {
    return new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  }

  // ---------------------------------------------------------------- the gate

  /** Resolves with the signed-in user once there is one (showing a screen until then). */
  async function gate() {
    const invite = location.pathname.match(/^\/invite\/([A-Za-z0-9_-]+)$/);
    if (invite) {
      await inviteScreen(invite[1]);
      history.replaceState(null, '', '/');
    }
    for (;;) {
      let res;
      try {
        res = await fetch('/api/auth/check');
      } catch {
        // The host is down: the app's reconnect loop takes over.
        return null;
      }
      if (res.ok) {
        hideGate();
        return res.json();
      }
      if (res.status !== 401) return null;
      await signInScreen();
    }
  }

  function hideGate() {
    $('gate').hidden = true;
    $('app').inert = false;
  }

  function showGate(which) {
    $('gate').hidden = false;
    $('app').inert = true;
    $('signin-form').hidden = which !== 'signin';
    $('invite-view').hidden = which !== 'invite';
  }

  /** Shows the sign-in form; resolves after a successful sign-in. */
  function signInScreen() {
    showGate('signin');
    const form = $('signin-form');
    const input = $('signin-token');
    const error = $('signin-error');
    const submit = $('signin-submit');
    error.hidden = true;
    input.value = '';
    input.focus();
    return new Promise((resolve) => {
      form.onsubmit = async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        submit.disabled = true;
        try {
          await api('POST', '/api/login', { token: input.value.trim() });
          input.value = '';
          form.onsubmit = null;
          resolve();
        } catch (e) {
          showError(error, e);
          input.select();
        } finally {
          submit.disabled = false;
        }
      };
    });
  }

  /** Shows what an invitation offers and accepts it on request. */
  async function inviteScreen(secret) {
    showGate('invite');
    const text = $('invite-text');
    const error = $('invite-error-accept');
    const accept = $('invite-accept');
    error.hidden = true;
    text.textContent = 'Looking at the invitation…';
    accept.hidden = true;
    try {
      const inv = await api('GET', `/api/invite/${secret}`);
      const by = inv.invitedBy ? ` ${inv.invitedBy} invites you` : ' You are invited';
      text.textContent = `${by} to pincer as “${inv.name}”${inv.role === 'admin' ? ', an admin' : ''}. `
        + `The invitation works once, until ${when(inv.expires_at)}; joining signs this browser in.`;
      accept.hidden = false;
    } catch (e) {
      text.textContent = '';
      showError(error, e);
      return waitForever();
    }
    return new Promise((resolve) => {
      accept.onclick = async () => {
        accept.disabled = true;
        error.hidden = true;
        try {
          await api('POST', `/invite/${secret}`);
          accept.onclick = null;
          resolve();
        } catch (e) {
          showError(error, e);
        } finally {
          accept.disabled = false;
        }
      };
    });
  }

  function waitForever() {
    return new Promise(() => {});
  }

  async function signOut() {
    try {
      await api('POST', '/api/logout');
    } catch {
      // Signed out or not, the sign-in screen is next.
    }
    // What the page kept for offline use belongs to the person leaving.
    localStorage.removeItem('pincer.rooms');
    localStorage.removeItem('pincer.user');
    location.reload();
  }

  // ---------------------------------------------------------------- people

  let people = { user: null, agents: [] };

  async function openPeople(user) {
    people.user = user;
    const dialog = $('people-dialog');
    $('invite-form').reset();
    $('invite-result').hidden = true;
    $('invite-error').hidden = true;
    $('invite-role').querySelector('option[value="admin"]').disabled = !user.owner;
    dialog.showModal();
    try {
      people.agents = await api('GET', '/api/agents');
    } catch {
      people.agents = [];
    }
    renderAgentChoices();
    await refreshPeople();
  }

  function renderAgentChoices() {
    const box = $('invite-agents');
    box.replaceChildren();
    for (const a of people.agents) {
      const label = el('label', 'check');
      const input = el('input');
      input.type = 'checkbox';
      input.value = a.id;
      input.checked = true;
      label.append(input, document.createTextNode(` ${a.name}`));
      box.append(label);
    }
  }

  async function refreshPeople() {
    const error = $('people-error');
    error.hidden = true;
    try {
      const [users, invites] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/invites')]);
      renderUsers(users);
      renderInvites(invites);
    } catch (e) {
      showError(error, e);
    }
  }

  function agentName(id) {
    const a = people.agents.find((x) => x.id === id);
    return a ? a.name : id;
  }

  function renderUsers(users) {
    const list = $('people-list');
    list.replaceChildren();
    for (const u of users) {
      const li = el('li', 'person');
      li.dataset.userId = u.id;
      const head = el('div', 'person-head');
      head.append(el('strong', 'person-name', u.displayName));
      const roles = u.roles.map((r) => (r.startsWith('admin:') ? `admin of ${agentName(r.slice(6))}` : r));
      const access = u.roles.some((r) => r === 'owner' || r === 'admin')
        ? 'all agents'
        : (u.agents.length ? u.agents.map(agentName).join(', ') : 'no agents yet');
      head.append(el('span', 'person-roles', [...roles, access].join(' · ')));
      if (u.online) head.append(el('span', 'badge', 'online'));
      li.append(head);
      const devices = el('ul', 'devices');
      for (const s of u.sessions) {
        const d = el('li', 'device');
        d.append(el('span', '', `${s.device}${s.current ? ' (this browser)' : ''} · last seen ${when(s.last_seen)}`));
        const out = el('button', 'link-btn', 'Sign out');
        out.type = 'button';
        out.onclick = () => act(() => api('DELETE', `/api/sessions/${s.id}`));
        d.append(out);
        devices.append(d);
      }
      li.append(devices);
      const actions = el('div', 'person-actions');
      const isOwner = u.roles.includes('owner');
      const isAdmin = u.roles.includes('admin');
      if (people.user.owner && !isOwner && u.id !== people.user.id) {
        const admin = el('button', 'btn btn-small', isAdmin ? 'Remove admin' : 'Make admin');
        admin.type = 'button';
        admin.onclick = () => act(() => api('POST', `/api/users/${encodeURIComponent(u.id)}/${isAdmin ? 'revoke' : 'grant'}`, { role: 'admin' }));
        actions.append(admin);
        const remove = el('button', 'btn btn-small btn-danger', 'Remove');
        remove.type = 'button';
        remove.onclick = () => {
          if (confirm(`Remove ${u.displayName}? Their devices are signed out at once.`)) {
            act(() => api('DELETE', `/api/users/${encodeURIComponent(u.id)}`));
          }
        };
        actions.append(remove);
      }
      if (!isOwner && !isAdmin) {
        for (const a of people.agents) {
          const has = u.agents.includes(a.id);
          const b = el('button', 'btn btn-small', `${has ? 'Remove from' : 'Add to'} ${a.name}`);
          b.type = 'button';
          b.onclick = () => act(() => api('POST', `/api/users/${encodeURIComponent(u.id)}/${has ? 'revoke' : 'grant'}`, { role: 'member', agentId: a.id }));
          actions.append(b);
        }
      }
      li.append(actions);
      list.append(li);
    }
  }

  function renderInvites(invites) {
    const list = $('invites-list');
    list.replaceChildren();
    $('invites-empty').hidden = invites.length > 0;
    for (const inv of invites) {
      const li = el('li', 'invite');
      li.append(el('span', '', `${inv.name} (${inv.role}) · until ${when(inv.expires_at)}`));
      const w = el('button', 'link-btn', 'Withdraw');
      w.type = 'button';
      w.onclick = () => act(() => api('DELETE', `/api/invites/${inv.id}`));
      li.append(w);
      list.append(li);
    }
  }

  async function act(fn) {
    try {
      await fn();
    } catch (e) {
      showError($('people-error'), e);
    }
    await refreshPeople();
  }

  async function createInvite(ev) {
    ev.preventDefault();
    const error = $('invite-error');
    error.hidden = true;
    const role = $('invite-role').value;
    const agents = [...$('invite-agents').querySelectorAll('input:checked')].map((i) => i.value);
    try {
      const data = await api('POST', '/api/invites', { name: $('invite-name').value, role, agents: role === 'member' ? agents : [] });
      $('invite-url').value = data.invite.url;
      const qr = $('invite-qr');
      qr.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(data.invite.qr_svg)}`;
      $('invite-result').hidden = false;
      await refreshPeople();
    } catch (e) {
      showError(error, e);
    }
  }

  function wire() {
    $('invite-form').addEventListener('submit', createInvite);
    $('invite-role').addEventListener('change', () => {
      $('invite-agents-field').hidden = $('invite-role').value !== 'member';
    });
    $('invite-copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('invite-url').value);
        $('invite-copy').textContent = 'Copied';
      } catch {
        $('invite-url').select();
      }
    });
    $('people-close').addEventListener('click', () => $('people-dialog').close());
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
  else wire();

  return { gate, signOut, openPeople, el, api };
})();
