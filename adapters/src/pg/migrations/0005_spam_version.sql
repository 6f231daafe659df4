-- A version per spam classifier, moved by every write: a replica asks
-- for it (one small read) before it uses its cached copy, and reads the
-- classifier again when another replica learned since.
ALTER TABLE spam_classifiers ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
