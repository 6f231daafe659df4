-- Postern on PostgreSQL, schema version 10: each body's parsed summary
-- (ENVELOPE, BODY, BODYSTRUCTURE, SORT keys; `adapters/src/pg/summary.rs`)
-- beside its row, so that a replica answers those fetches without the
-- object store. NULL for bodies stored before: their summary is computed
-- from the body.
ALTER TABLE blobs ADD COLUMN summary BYTEA;
