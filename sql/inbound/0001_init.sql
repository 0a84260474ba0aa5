-- Session inbound.db: written only by the host, read by the container. journal_mode=DELETE.
-- seq is even here and odd in outbound.db; it is the message id the agent sees.

CREATE TABLE messages_in (
  id                TEXT PRIMARY KEY,
  seq               INTEGER NOT NULL UNIQUE,
  kind              TEXT NOT NULL CHECK (kind IN ('chat', 'task', 'webhook', 'system')),
  timestamp         INTEGER NOT NULL,
  status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed', 'paused')),
  process_after     INTEGER,
  recurrence        TEXT,
  series_id         TEXT,
  tries             INTEGER NOT NULL DEFAULT 0,
  trigger           INTEGER NOT NULL DEFAULT 1,   -- 0: context only, does not wake the agent
  platform_id       TEXT,
  channel_type      TEXT,
  thread_id         TEXT,
  content           TEXT NOT NULL,                -- JSON
  source_session_id TEXT,
  on_wake           INTEGER NOT NULL DEFAULT 0    -- 1: only for a fresh container's first poll
);
CREATE INDEX messages_in_series ON messages_in(series_id);
CREATE INDEX messages_in_status ON messages_in(status, seq);

-- Outcome of every outbound row: delivered, or failed with a reason.
CREATE TABLE delivered (
  message_out_id      TEXT PRIMARY KEY,
  platform_message_id TEXT,
  status              TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
  reason              TEXT,
  delivered_at        INTEGER NOT NULL
);

-- Projection of the agent's destinations, rewritten on every container start.
CREATE TABLE destinations (
  name         TEXT PRIMARY KEY,
  display_name TEXT,
  type         TEXT NOT NULL CHECK (type IN ('channel', 'agent')),
  channel_type TEXT,
  platform_id  TEXT,
  agent_id     TEXT
);

-- Default reply address of the session.
CREATE TABLE session_routing (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  channel_type TEXT,
  platform_id  TEXT,
  thread_id    TEXT
);
