-- The conversation the agent carries, a message a row: a turn appends its new messages and
-- deletes those trimmed off the front, where one JSON value in session_state was rewritten whole
-- (and journaled) by every turn. Still one conversation per provider.

CREATE TABLE conversation (
  provider TEXT NOT NULL,                  -- lowercase provider name
  pos      INTEGER NOT NULL,               -- order within the conversation
  message  TEXT NOT NULL,                  -- JSON of one message
  PRIMARY KEY (provider, pos)
);

-- Carry over stored conversations; one that is not valid JSON was unreadable and starts anew.
INSERT INTO conversation (provider, pos, message)
  SELECT substr(s.key, length('continuation:') + 1), j.key, j.value
  FROM session_state s, json_each(s.value) j
  WHERE s.key LIKE 'continuation:%' AND json_valid(s.value) AND json_type(s.value) = 'array';

-- Nothing else lived there.
DROP TABLE session_state;
