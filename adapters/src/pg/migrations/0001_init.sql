-- Postern on PostgreSQL, schema version 1: shared counters, the outbound
-- queue, message bodies by content hash, mailboxes and their messages.
-- Applied once, in one transaction, by the first Postern that starts
-- (pg/mod.rs, under an advisory lock).

-- Rate-limit and daily-relay counters: one row per name and window.
CREATE TABLE counters (
    name    TEXT   NOT NULL,
    secs    BIGINT NOT NULL CHECK (secs > 0),
    idx     BIGINT NOT NULL,
    count   BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (name, secs, idx)
);
CREATE INDEX counters_expires ON counters (expires);

-- The outbound queue: one row per message, recipients as parallel arrays
-- so that a state change is one UPDATE. A claim is the worker (replica)
-- attempting the message and until when.
CREATE TABLE queue (
    id           TEXT    PRIMARY KEY,
    sender       TEXT    NOT NULL,
    created      BIGINT  NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    next_attempt BIGINT  NOT NULL,
    rcpts        TEXT[]  NOT NULL,
    status       TEXT[]  NOT NULL,
    replies      TEXT[]  NOT NULL,
    data         BYTEA   NOT NULL,
    claim_worker TEXT,
    claim_until  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX queue_due ON queue (next_attempt);
CREATE INDEX queue_age ON queue (created, id);

-- Message bodies in the object store, keyed by SHA-256 (hex): a row means
-- the object was written before the row committed. refs counts the
-- messages that point at it.
CREATE TABLE blobs (
    hash    TEXT   PRIMARY KEY,
    size    BIGINT NOT NULL,
    refs    BIGINT NOT NULL,
    created BIGINT NOT NULL
);

-- Mailboxes: UIDs are allocated by UPDATE ... RETURNING on this row, which
-- locks it until the delivering transaction commits: no gaps, no doubles.
CREATE TABLE mailboxes (
    id            BIGSERIAL PRIMARY KEY,
    account       TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    uidvalidity   BIGINT NOT NULL,
    uidnext       BIGINT NOT NULL DEFAULT 1,
    highestmodseq BIGINT NOT NULL DEFAULT 1,
    subscribed    BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (account, name)
);

CREATE TABLE messages (
    mailbox      BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid          BIGINT NOT NULL,
    blob         TEXT   NOT NULL REFERENCES blobs (hash),
    prefix       BYTEA  NOT NULL,
    size         BIGINT NOT NULL,
    internaldate BIGINT NOT NULL,
    flags        TEXT[] NOT NULL DEFAULT '{}',
    modseq       BIGINT NOT NULL,
    PRIMARY KEY (mailbox, uid)
);
CREATE INDEX messages_blob ON messages (blob);
