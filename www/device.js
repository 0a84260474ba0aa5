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

  function start() {
    registerWorker();
  }

  return { start, worker: () => registration };
})();
