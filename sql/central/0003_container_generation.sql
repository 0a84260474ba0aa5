-- Agent containers are named after their session and a generation that only grows, never
-- after the clock: a name is never reused, and the host can tell which container of a session
-- is the newest when it adopts containers after a crash.
ALTER TABLE sessions ADD COLUMN container_gen INTEGER NOT NULL DEFAULT 0;
