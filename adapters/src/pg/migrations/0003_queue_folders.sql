-- The mailbox folder of each recipient of a queued local copy (parallel
-- to rcpts; a NULL element is INBOX). NULL for rows queued before it
-- existed: every recipient then goes to INBOX.
ALTER TABLE queue ADD COLUMN folders TEXT[];
