-- Central DB (data/pincer.db): host only, WAL. Times are epoch milliseconds.

-- Install-wide settings (generated keys, first-run markers).
CREATE TABLE settings (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- An agent: one working folder under groups/, one container per session.
CREATE TABLE agents (
  id                      TEXT PRIMARY KEY,
  name                    TEXT NOT NULL,
  folder                  TEXT NOT NULL UNIQUE,
  provider                TEXT,            -- NULL: PINCER_PROVIDER
  model                   TEXT,            -- NULL: the provider's configured model
  max_messages_per_prompt INTEGER,
  created_at              INTEGER NOT NULL
);

-- A room is a conversation on one channel (a "messaging group"): a webchat room, a chat, a DM.
CREATE TABLE rooms (
  id                    TEXT PRIMARY KEY,
  channel_type          TEXT NOT NULL,
  platform_id           TEXT NOT NULL,
  name                  TEXT NOT NULL,
  is_group              INTEGER NOT NULL DEFAULT 1,
  unknown_sender_policy TEXT NOT NULL DEFAULT 'public'
                        CHECK (unknown_sender_policy IN ('strict', 'request_approval', 'public')),
  denied_at             INTEGER,
  created_at            INTEGER NOT NULL,
  UNIQUE (channel_type, platform_id)
);

-- Which agents a room's messages go to, and when they engage.
CREATE TABLE wirings (
  id                     TEXT PRIMARY KEY,
  room_id                TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  agent_id               TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  engage_mode            TEXT NOT NULL CHECK (engage_mode IN ('pattern', 'mention', 'mention-sticky')),
  engage_pattern         TEXT,            -- regex for engage_mode 'pattern'; NULL or '.' = always
  sender_scope           TEXT NOT NULL CHECK (sender_scope IN ('all', 'known')),
  ignored_message_policy TEXT NOT NULL CHECK (ignored_message_policy IN ('drop', 'accumulate')),
  session_mode           TEXT NOT NULL CHECK (session_mode IN ('shared', 'per-thread', 'agent-shared')),
  priority               INTEGER NOT NULL DEFAULT 0,
  created_at             INTEGER NOT NULL,
  UNIQUE (room_id, agent_id)
);
CREATE INDEX wirings_agent ON wirings(agent_id);

-- A conversation of one agent (one container at a time, one pair of session DBs).
CREATE TABLE sessions (
  id               TEXT PRIMARY KEY,
  agent_id         TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  room_id          TEXT REFERENCES rooms(id) ON DELETE SET NULL,
  thread_id        TEXT,
  provider         TEXT,
  status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
  container_status TEXT NOT NULL DEFAULT 'stopped' CHECK (container_status IN ('running', 'idle', 'stopped')),
  last_active      INTEGER,
  created_at       INTEGER NOT NULL
);
CREATE INDEX sessions_agent ON sessions(agent_id, status);
CREATE INDEX sessions_room ON sessions(room_id, thread_id);

CREATE TABLE users (
  id           TEXT PRIMARY KEY,            -- '<channel>:<handle>', e.g. 'webchat:local-owner'
  kind         TEXT NOT NULL,
  display_name TEXT,
  created_at   INTEGER NOT NULL
);

CREATE TABLE user_roles (
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role       TEXT NOT NULL CHECK (role IN ('owner', 'admin')),
  agent_id   TEXT REFERENCES agents(id) ON DELETE CASCADE,   -- NULL: global
  granted_by TEXT,
  granted_at INTEGER NOT NULL,
  CHECK (role <> 'owner' OR agent_id IS NULL)
);
CREATE UNIQUE INDEX user_roles_key ON user_roles(user_id, role, COALESCE(agent_id, ''));
CREATE INDEX user_roles_agent ON user_roles(agent_id, role);

CREATE TABLE agent_members (
  user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  added_by TEXT,
  added_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, agent_id)
);

-- Where an agent may send: row existence is the ACL, local_name is what the agent writes.
CREATE TABLE agent_destinations (
  agent_id    TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  local_name  TEXT NOT NULL,
  target_type TEXT NOT NULL CHECK (target_type IN ('channel', 'agent')),
  target_id   TEXT NOT NULL,               -- room id or agent id
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (agent_id, local_name)
);
CREATE INDEX agent_destinations_target ON agent_destinations(target_type, target_id);

-- Every message of every room, in order. seq is per room, gap-free, strictly increasing.
-- User messages are the router's durable queue: routed_at stays NULL until every engaged agent's
-- session holds the message.
CREATE TABLE room_messages (
  id          TEXT PRIMARY KEY,
  room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  sender      TEXT NOT NULL,               -- display name
  sender_id   TEXT,                        -- user id or agent id
  sender_type TEXT NOT NULL CHECK (sender_type IN ('user', 'agent', 'system')),
  text        TEXT NOT NULL,
  html        TEXT NOT NULL,               -- sanitised rendering of text
  files       TEXT NOT NULL DEFAULT '[]',  -- JSON [{name,url,mime,size}]
  client_id   TEXT,                        -- sender-chosen idempotency key
  source_id   TEXT,                        -- '<session>/<outbound id>' of an agent reply
  routed_at   INTEGER,
  created_at  INTEGER NOT NULL,
  UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX room_messages_client ON room_messages(room_id, sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE UNIQUE INDEX room_messages_source ON room_messages(source_id) WHERE source_id IS NOT NULL;
CREATE INDEX room_messages_unrouted ON room_messages(created_at) WHERE routed_at IS NULL;
