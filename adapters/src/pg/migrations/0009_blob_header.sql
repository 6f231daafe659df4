-- Postern on PostgreSQL, schema version 9: each body's header section
-- (up to 64 KiB) beside its row, so that a header fetch (a webmail's
-- message list: BODY.PEEK[HEADER], HEADER.FIELDS) is answered from the
-- database without reading the body from the object store. NULL for
-- bodies stored before (or with bigger headers): those are read whole.
ALTER TABLE blobs ADD COLUMN header BYTEA;
