-- Web Push subscriptions, per person and device (the signed-in session it was made on).
CREATE TABLE push_subscriptions (
  endpoint   TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  session_id TEXT,
  p256dh     TEXT NOT NULL,
  auth       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_ok    INTEGER,
  failures   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id);

-- Notification choices per person (Web Push is per device; this is what is not).
CREATE TABLE notify_prefs (
  user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  webhook INTEGER NOT NULL DEFAULT 0   -- also notify through PINCER_NOTIFY_URL
);
