// pincer — the app on this device: the service worker (offline shell, updates offered as soon as
// they are out) and notifications (Web Push subscription, the toggle showing its real state,
// the app badge, and telling the server whether the app is in view).
//
// app.js calls `PincerDevice.start(hooks)` once signed in.

'use strict';

window.PincerDevice = (() => {
  const $ = (id) => document.getElementById(id);
  let registration = null;

  async function registerWorker() {
    if (!('serviceWorker' in navigator)) return null;
    try {
      registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    } catch {
      return null; // not a secure context (plain HTTP on the LAN): no offline shell, no push
    }
    const offer = (worker) => {
      if (!worker || !navigator.serviceWorker.controller) return; // the first install needs no prompt
      const bar = $('update-bar');
      bar.hidden = false;
      $('update-reload').onclick = () => worker.postMessage({ type: 'skip-waiting' });
    };
    if (registration.waiting) offer(registration.waiting);
    registration.addEventListener('updatefound', () => {
      const w = registration.installing;
      if (!w) return;
      w.addEventListener('statechange', () => {
        if (w.state === 'installed') offer(w);
      });
    });
    let reloading = false;
    navigator.serviceWorker.addEventListener('controllerchange', () => {
      if (reloading || $('update-bar').hidden) return;
      reloading = true;
      location.reload();
    });
    return registration;
  }

  // ---------------------------------------------------------------- notifications

  let hooks = { currentRoom: () => null, send: () => false, selectRoom: () => {} };
  const CSRF = { 'X-Webchat-CSRF': '1', 'Content-Type': 'application/json' };

  function b64ToBytes(s) {
    const pad = '='.repeat((4 - (s.length % 4)) % 4);
    const raw = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  /** What the notifications toggle shows: on, off, blocked, or why it cannot work here. */
  async function pushState() {
    if (!window.isSecureContext) return 'needs-https';
    if (!('PushManager' in window) || !('Notification' in window)) return 'unsupported';
    if (Notification.permission === 'denied') return 'blocked';
    const reg = registration || (await navigator.serviceWorker.ready.catch(() => null));
    if (!reg) return 'unsupported';
    const sub = await reg.pushManager.getSubscription();
    return sub && Notification.permission === 'granted' ? 'on' : 'off';
  }

  const LABELS = {
    on: 'Notifications: on',
    off: 'Notifications: off',
    blocked: 'Notifications: blocked in the browser',
    'needs-https': 'Notifications need HTTPS',
    unsupported: 'Notifications: not in this browser',
    busy: 'Notifications: …',
  };

  async function showPushState(state) {
    const btn = $('notify-toggle');
    const s = state || (await pushState());
    btn.dataset.state = s;
    btn.textContent = LABELS[s];
    btn.disabled = !['on', 'off'].includes(s);
    btn.setAttribute('aria-pressed', String(s === 'on'));
  }

  async function togglePush() {
    const btn = $('notify-toggle');
    const was = btn.dataset.state;
    await showPushState('busy');
    try {
      const reg = await navigator.serviceWorker.ready;
      if (was === 'on') {
        const sub = await reg.pushManager.getSubscription();
        if (sub) {
          await fetch('/api/push/unsubscribe', { method: 'POST', headers: CSRF, body: JSON.stringify({ endpoint: sub.endpoint }) });
          await sub.unsubscribe();
        }
      } else {
        if ((await Notification.requestPermission()) !== 'granted') return;
        const { key } = await (await fetch('/api/push/vapid-public')).json();
        const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64ToBytes(key) });
        const res = await fetch('/api/push/subscribe', { method: 'POST', headers: CSRF, body: JSON.stringify(sub.toJSON()) });
        if (!res.ok) {
          const data = await res.json().catch(() => ({}));
          await sub.unsubscribe();
          throw new Error(data.error || `The server answered ${res.status}.`);
        }
      }
    } catch (e) {
      window.alert(`Notifications could not be changed: ${e.message}`);
    } finally {
      await showPushState();
    }
  }

  /** The webhook toggle (PINCER_NOTIFY_URL): shown only where the server has one. */
  async function showWebhook(prefs) {
    const btn = $('webhook-toggle');
    let p = prefs;
    if (!p) {
      const res = await fetch('/api/notify').catch(() => null);
      if (!res || !res.ok) return;
      p = await res.json();
    }
    btn.hidden = !p.webhookAvailable;
    btn.textContent = p.webhook ? 'Webhook: on' : 'Webhook: off';
    btn.setAttribute('aria-pressed', String(!!p.webhook));
  }

  async function toggleWebhook() {
    const on = $('webhook-toggle').getAttribute('aria-pressed') !== 'true';
    const res = await fetch('/api/notify', { method: 'PUT', headers: CSRF, body: JSON.stringify({ webhook: on }) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) window.alert(`The webhook could not be changed: ${data.error || res.status}`);
    await showWebhook(res.ok ? data : null);
  }

  /** Tells the server whether the app is in view and which room it shows (no notifications then). */
  function reportView() {
    const visible = document.visibilityState === 'visible';
    hooks.send({ type: 'view', visible, room_id: hooks.currentRoom() });
    if (visible && navigator.clearAppBadge) navigator.clearAppBadge().catch(() => {});
  }

  function start(h) {
    hooks = { ...hooks, ...h };
    registerWorker().then(() => showPushState());
    $('notify-toggle').addEventListener('click', togglePush);
    $('webhook-toggle').addEventListener('click', toggleWebhook);
    showWebhook();
    document.addEventListener('visibilitychange', reportView);
    if ('serviceWorker' in navigator) {
      // A notification clicked while the app is open: show its room.
      navigator.serviceWorker.addEventListener('message', (ev) => {
        if (ev.data && ev.data.type === 'open-room' && ev.data.roomId) hooks.selectRoom(ev.data.roomId);
      });
    }
  }

  return { start, reportView, worker: () => registration, pushState };
})();
