-- The tools an agent used for a reply (JSON [{name, summary}]), as its stream showed them.
ALTER TABLE room_messages ADD COLUMN tools TEXT;
