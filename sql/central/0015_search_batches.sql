-- Stored messages are indexed for search in batches, off the path of a message: the messages
-- with a rowid above search_state.indexed_upto are not indexed yet, and the indexer (or a
-- search, first) indexes them. An FTS5 segment written per message cost the host a tenth of
-- its time per message; one per batch costs next to nothing.
CREATE TABLE search_state (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  indexed_upto INTEGER NOT NULL
);
INSERT INTO search_state (id, indexed_upto) SELECT 1, COALESCE(MAX(rowid), 0) FROM room_messages;

DROP TRIGGER room_messages_search_insert;
DROP TRIGGER room_messages_search_delete;
DROP TRIGGER room_messages_search_update;

-- A new message normally gets a rowid above every other one: it waits for its batch. One that
-- got a rowid already passed (the newest messages were deleted) is indexed at once.
CREATE TRIGGER room_messages_search_insert AFTER INSERT ON room_messages
  WHEN new.rowid <= (SELECT indexed_upto FROM search_state) BEGIN
  INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.text);
END;
-- Only an indexed message is taken out of the index or indexed again (external content: the
-- index is told the text it indexed); the others are read as they are when their batch comes.
CREATE TRIGGER room_messages_search_delete AFTER DELETE ON room_messages
  WHEN old.rowid <= (SELECT indexed_upto FROM search_state) BEGIN
  INSERT INTO message_search (message_search, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER room_messages_search_update AFTER UPDATE OF text ON room_messages
  WHEN old.rowid <= (SELECT indexed_upto FROM search_state) BEGIN
  INSERT INTO message_search (message_search, rowid, text) VALUES ('delete', old.rowid, old.text);
  INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.text);
END;
