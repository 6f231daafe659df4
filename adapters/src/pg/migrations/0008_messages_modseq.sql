-- Postern on PostgreSQL, schema version 8: a mailbox's messages by
-- mod-sequence, so that a replica whose copy of a mailbox is behind reads
-- only what changed since (messages with a higher mod-sequence, and the
-- tombstones of expunges) instead of every message.
CREATE INDEX messages_modseq ON messages (mailbox, modseq);
