-- Postern on PostgreSQL, schema version 2: the IMAP mailbox store.
-- Accounts appear on first use with the default folders; a mailbox row
-- carries what IMAP keeps per mailbox (UIDVALIDITY, UIDNEXT,
-- HIGHESTMODSEQ, the keywords in the order they were first set, the
-- \Recent mark and the QRESYNC tombstone floor). Every change to a
-- mailbox's messages updates its row, which locks it until commit: UIDs
-- and mod-sequences are handed out under that lock.

-- An account row means its default folders were made (once).
CREATE TABLE accounts (
    account TEXT   PRIMARY KEY,
    created BIGINT NOT NULL
);

ALTER TABLE mailboxes
    DROP COLUMN subscribed,
    ADD COLUMN keywords     TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN first_recent BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN tomb_floor   BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN tombs        BIGINT NOT NULL DEFAULT 0;

-- Subscriptions are names: a name may be subscribed without a mailbox.
CREATE TABLE subscriptions (
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (account, name)
);

-- Expunged UIDs with the mod-sequence of their expunge (QRESYNC
-- VANISHED), at most a bound per mailbox (mailboxes.tombs counts them;
-- past the bound the oldest go and tomb_floor rises).
CREATE TABLE tombstones (
    mailbox BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    modseq  BIGINT NOT NULL,
    uid     BIGINT NOT NULL
);
CREATE INDEX tombstones_mailbox ON tombstones (mailbox, modseq);

-- blobs.refs counts the messages pointing at a body, kept by the
-- database itself (a message inserted, copied, expunged or its mailbox
-- deleted). A body at zero references may be removed from the object
-- store by a later sweep.
CREATE FUNCTION postern_blob_refs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE blobs SET refs = refs + 1 WHERE hash = NEW.blob;
    ELSE
        UPDATE blobs SET refs = refs - 1 WHERE hash = OLD.blob;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_blob_refs AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION postern_blob_refs();

-- Change notification across replicas: a change to a mailbox's messages
-- or flags moves its UIDNEXT or HIGHESTMODSEQ; the NOTIFY goes out when
-- (and only if) that transaction commits. Payload: the mailbox id.
CREATE FUNCTION postern_mailbox_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('postern_mailbox', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER mailboxes_changed AFTER UPDATE OF uidnext, highestmodseq ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION postern_mailbox_changed();
