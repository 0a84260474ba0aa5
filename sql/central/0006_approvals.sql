-- Requests an agent makes that a person decides: a new agent, an MCP server (and later packages).
CREATE TABLE approvals (
  id           TEXT PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('create_agent', 'add_mcp_server', 'install_packages')),
  agent_id     TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  session_id   TEXT NOT NULL,
  room_id      TEXT REFERENCES rooms(id) ON DELETE SET NULL,
  requested_by TEXT,                      -- the person whose message the agent was answering
  payload      TEXT NOT NULL,             -- JSON, as checked by the host
  summary      TEXT NOT NULL,             -- one line for people
  status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'failed')),
  message_id   TEXT,                      -- the card shown in the room
  source_id    TEXT NOT NULL UNIQUE,      -- the agent's outbound row: one approval per request
  created_at   INTEGER NOT NULL,
  decided_by   TEXT,
  decided_at   INTEGER,
  outcome      TEXT
);
CREATE INDEX approvals_pending ON approvals(status, created_at);
