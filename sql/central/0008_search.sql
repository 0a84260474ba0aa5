-- Full-text search over room messages (FTS5, an external-content index kept in step by
-- triggers). Diacritics are folded, so "cafe" finds "café".
CREATE VIRTUAL TABLE message_search USING fts5(
  text,
  content = 'room_messages',
  content_rowid = 'rowid',
  tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO message_search (message_search) VALUES ('rebuild');

CREATE TRIGGER room_messages_search_insert AFTER INSERT ON room_messages BEGIN
  INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER room_messages_search_delete AFTER DELETE ON room_messages BEGIN
  INSERT INTO message_search (message_search, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER room_messages_search_update AFTER UPDATE OF text ON room_messages BEGIN
  INSERT INTO message_search (message_search, rowid, text) VALUES ('delete', old.rowid, old.text);
  INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.text);
END;
