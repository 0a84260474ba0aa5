-- Tasks can be cancelled (a state of their own, so lists can say so): the status check gains
-- 'cancelled'. SQLite cannot change a CHECK in place, so the table is rebuilt.

CREATE TABLE messages_in_new (
  id                TEXT PRIMARY KEY,
  seq               INTEGER NOT NULL UNIQUE,
  kind              TEXT NOT NULL CHECK (kind IN ('chat', 'task', 'webhook', 'system')),
  timestamp         INTEGER NOT NULL,
  status            TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'completed', 'failed', 'paused', 'cancelled')),
  process_after     INTEGER,
  recurrence        TEXT,
  series_id         TEXT,
  tries             INTEGER NOT NULL DEFAULT 0,
  trigger           INTEGER NOT NULL DEFAULT 1,
  platform_id       TEXT,
  channel_type      TEXT,
  thread_id         TEXT,
  content           TEXT NOT NULL,
  source_session_id TEXT,
  on_wake           INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_in_new SELECT id, seq, kind, timestamp, status, process_after, recurrence, series_id, tries,
  trigger, platform_id, channel_type, thread_id, content, source_session_id, on_wake FROM messages_in;
DROP TABLE messages_in;
ALTER TABLE messages_in_new RENAME TO messages_in;
CREATE INDEX messages_in_series ON messages_in(series_id);
CREATE INDEX messages_in_status ON messages_in(status, seq);
