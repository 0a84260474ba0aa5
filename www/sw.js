// pincer's service worker: the app shell works offline, a new version of the app is offered
// as soon as it is out, and Web Push notifications are shown (and opened) here.
//
// Never cached or intercepted: the API, the WebSocket, invitations and the trust pages. The
// cache is named after the version the server stamps into this file, so an upgrade replaces it.

'use strict';

const VERSION = '__PINCER_VERSION__';
const CACHE = `pincer-${VERSION}`;
const SHELL = [
  '/', '/app.js', '/access.js', '/device.js', '/rooms.js', '/models.js', '/pins.js', '/highlight.js', '/style.css', '/icon.svg', '/manifest.webmanifest',
  '/icon-192.png', '/icon-512.png', '/icon-maskable-512.png',
];
const NEVER = [/^\/api\//, /^\/ws$/, /^\/invite\//, /^\/trust/, /^\/health$/];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('pincer-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The page asks a waiting worker to take over (after the person agreed to reload).
self.addEventListener('message', (ev) => {
  if (ev.data && ev.data.type === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('fetch', (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (NEVER.some((re) => re.test(url.pathname))) return;
  // The network first (so an update shows at once), the cached shell when offline.
  ev.respondWith(
    fetch(ev.request)
      .then((res) => {
        if (res.ok && SHELL.includes(url.pathname)) {
          const copy = res.clone();
          caches.open(CACHE).then((c) => c.put(ev.request, copy));
        }
        return res;
      })
      .catch(() => caches.match(ev.request.mode === 'navigate' ? '/' : ev.request).then((r) => r || Response.error())),
  );
});

self.addEventListener('push', (ev) => {
  let data = {};
  try {
    data = ev.data ? ev.data.json() : {};
  } catch {
    data = { title: 'pincer', body: ev.data ? ev.data.text() : '' };
  }
  ev.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const seen = windows.some((w) => w.visibilityState === 'visible');
    if (!seen && self.registration.setAppBadge && Number.isFinite(data.unread)) {
      await self.registration.setAppBadge(data.unread).catch(() => {});
    }
    await self.registration.showNotification(data.title || 'pincer', {
      body: data.body || '',
      tag: data.tag || undefined,
      icon: '/icon-192.png',
      badge: '/icon-192.png',
      data: { roomId: data.room_id || null, messageId: data.message_id || null },
    });
  })());
});

self.addEventListener('notificationclick', (ev) => {
  ev.notification.close();
  const roomId = ev.notification.data && ev.notification.data.roomId;
  const target = roomId ? `/?room=${encodeURIComponent(roomId)}` : '/';
  ev.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of windows) {
      if ('focus' in w) {
        w.postMessage({ type: 'open-room', roomId });
        return w.focus();
      }
    }
    return self.clients.openWindow(target);
  })());
});
