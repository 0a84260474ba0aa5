-- Who an agent in a room answers. Until now every webchat room behaved as 'strict' (only people
-- with access to one of its agents saw it), whatever the column said: make that explicit.
UPDATE rooms SET unknown_sender_policy = 'strict';

-- Every message an agent did not get, and why (nothing is dropped silently).
CREATE TABLE dropped_messages (
  id          INTEGER PRIMARY KEY,
  room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  message_id  TEXT NOT NULL,
  agent_id    TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  sender_id   TEXT,
  reason      TEXT NOT NULL,   -- not_member, awaiting_approval, sender_denied, command_not_allowed
  created_at  INTEGER NOT NULL,
  replayed_at INTEGER,         -- given to the agent later (the sender was let in)
  UNIQUE (message_id, agent_id)
);
CREATE INDEX dropped_messages_room ON dropped_messages(room_id, created_at);

-- Approvals gain 'sender': someone without access wrote in a room that asks before letting
-- them in. SQLite cannot change a CHECK in place, so the table is rebuilt.
CREATE TABLE approvals_new (
  id           TEXT PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('create_agent', 'add_mcp_server', 'install_packages', 'sender')),
  agent_id     TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  session_id   TEXT NOT NULL,
  room_id      TEXT REFERENCES rooms(id) ON DELETE SET NULL,
  requested_by TEXT,
  payload      TEXT NOT NULL,
  summary      TEXT NOT NULL,
  status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'failed')),
  message_id   TEXT,
  source_id    TEXT NOT NULL UNIQUE,
  created_at   INTEGER NOT NULL,
  decided_by   TEXT,
  decided_at   INTEGER,
  outcome      TEXT
);
INSERT INTO approvals_new SELECT id, kind, agent_id, session_id, room_id, requested_by, payload, summary, status,
  message_id, source_id, created_at, decided_by, decided_at, outcome FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_pending ON approvals(status, created_at);
