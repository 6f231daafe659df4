-- The references to a body are counted from the messages when needed
-- (the index messages_blob), no longer kept in blobs.refs by a trigger:
-- the trigger made every message insert, copy and expunge lock the body's
-- row while holding mailbox rows, so a delivery and a COPY of one body
-- for two accounts could wait for each other (a deadlock), and replicas
-- delivering one message to many accounts queued on that row.
DROP TRIGGER messages_blob_refs ON messages;
DROP FUNCTION postern_blob_refs();
ALTER TABLE blobs DROP COLUMN refs;
