-- The per-user spam classifiers (issue 16): one row per account holding
-- the serialized classifier, the same bytes as the `postern-spam` file of
-- the Maildir backend. Learning is read-modify-write under the row's lock,
-- so two replicas learning for one user at once lose nothing.
CREATE TABLE spam_classifiers (
    account TEXT   PRIMARY KEY,
    data    BYTEA  NOT NULL,
    updated BIGINT NOT NULL
);
