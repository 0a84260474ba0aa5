-- Session outbound.db: written only by the container (the host creates it empty and reads it).
-- journal_mode=DELETE. seq is odd here.

CREATE TABLE messages_out (
  id            TEXT PRIMARY KEY,
  seq           INTEGER NOT NULL UNIQUE,
  in_reply_to   TEXT,
  timestamp     INTEGER NOT NULL,
  deliver_after INTEGER,
  recurrence    TEXT,
  kind          TEXT NOT NULL CHECK (kind IN ('chat', 'system')),
  platform_id   TEXT,
  channel_type  TEXT,
  thread_id     TEXT,
  content       TEXT NOT NULL                -- JSON
);

-- The container's claim on an inbound row: processing, then completed or failed.
CREATE TABLE processing_ack (
  message_id     TEXT PRIMARY KEY,
  status         TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
  status_changed INTEGER NOT NULL
);

CREATE TABLE session_state (
  key        TEXT PRIMARY KEY,               -- e.g. 'continuation:<provider>'
  value      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- The tool in flight, so the host widens its stuck-container window for long tool calls.
CREATE TABLE container_state (
  id                       INTEGER PRIMARY KEY CHECK (id = 1),
  current_tool             TEXT,
  tool_declared_timeout_ms INTEGER,
  tool_started_at          INTEGER,
  updated_at               INTEGER NOT NULL
);
