-- A message its sender took back: the row stays (seqs stay gap-free) with its text, HTML and
-- files cleared, and the time it was deleted.
ALTER TABLE room_messages ADD COLUMN deleted_at INTEGER;
