-- Rooms with several agents: which agent answers a message nobody was mentioned in (the prime
-- agent), what happens without one (every agent answers, or only those mentioned), and the agent
-- a `mention-sticky` conversation is currently with.
ALTER TABLE rooms ADD COLUMN prime_agent_id TEXT REFERENCES agents(id) ON DELETE SET NULL;
ALTER TABLE rooms ADD COLUMN engage_default TEXT NOT NULL DEFAULT 'broadcast'
  CHECK (engage_default IN ('broadcast', 'mention-only'));
ALTER TABLE rooms ADD COLUMN sticky_agent_id TEXT REFERENCES agents(id) ON DELETE SET NULL;

-- Rooms as they were had one agent each: it is their prime.
UPDATE rooms SET prime_agent_id = (SELECT agent_id FROM wirings w WHERE w.room_id = rooms.id ORDER BY created_at LIMIT 1)
  WHERE (SELECT COUNT(*) FROM wirings w WHERE w.room_id = rooms.id) = 1;

-- Rooms a person has put away (they stay for everyone else).
CREATE TABLE room_archives (
  room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  archived_at INTEGER NOT NULL,
  PRIMARY KEY (room_id, user_id)
);
