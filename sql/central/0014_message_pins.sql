-- Messages pinned in a room: shown to everyone in it, newest pin first.
CREATE TABLE message_pins (
  room_id    TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  message_id TEXT NOT NULL REFERENCES room_messages(id) ON DELETE CASCADE,
  pinned_by  TEXT NOT NULL,
  pinned_at  INTEGER NOT NULL,
  PRIMARY KEY (room_id, message_id)
);
