-- Signed-in browsers: a cookie holds a random secret; only its SHA-256 is stored, so the table
-- leaks no usable credential. A session ends at expires_at, or at once when revoked.
CREATE TABLE auth_sessions (
  id          TEXT PRIMARY KEY,                 -- public id, for listing and revoking
  secret_hash TEXT NOT NULL UNIQUE,
  user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  device      TEXT NOT NULL DEFAULT '',         -- from the User-Agent, for people to recognise it
  ip          TEXT,
  created_at  INTEGER NOT NULL,
  last_seen   INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);

-- One-time, expiring invitations: the link carries a secret, only its hash is stored.
CREATE TABLE invites (
  id          TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  name        TEXT NOT NULL,                    -- display name of the person invited
  role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
  agents      TEXT NOT NULL DEFAULT '[]',       -- JSON: agent ids a member may use
  created_by  TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER,
  used_by     TEXT,
  revoked_at  INTEGER
);
