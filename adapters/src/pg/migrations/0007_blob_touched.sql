-- When a body was last known to be wanted (the database's clock, in
-- seconds): set when its row is made and whenever a delivery or APPEND
-- finds the body already stored (and so does not write it again).
-- `postern store gc` removes only bodies that no message refers to and
-- that nobody wanted within its grace period.
ALTER TABLE blobs ADD COLUMN touched BIGINT NOT NULL
    DEFAULT (extract(epoch FROM now()))::bigint;
CREATE INDEX blobs_touched ON blobs (touched);
