//! Mailbox names between the client and the store: the hierarchy
//! separator the client sees (RFC 9051 5.1.1, NAMESPACE of RFC 2342).
//!
//! The store always names mailboxes with `/` between levels (and keeps
//! them on disk as Maildir++ `.Parent.Child`, whichever separator the
//! clients see), so only the session translates: with `.` a client's
//! `Parent.Child` is the store's `Parent/Child`. A name holding the other
//! character cannot be kept in Maildir++ (`.` is its level separator, `/`
//! the file system's), so it is refused with a `NO` that says why, as
//! Dovecot's Maildir++ layout refuses it (without its listescape plugin).

use super::ImapSession;

/// The hierarchy separator clients see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HierarchySeparator {
    /// `/` (Postern's default; Dovecot's with `separator = /`).
    #[default]
    Slash,
    /// `.` (Dovecot's default for a Maildir++ layout, so what a
    /// docker-mailserver deployment's clients have cached).
    Dot,
}

impl HierarchySeparator {
    /// The separator character.
    pub fn as_char(self) -> char {
        match self {
            HierarchySeparator::Slash => '/',
            HierarchySeparator::Dot => '.',
        }
    }

    /// The store's form of a name as the client wrote it (already in
    /// modified UTF-7), or why it cannot be kept.
    pub fn to_store(self, name: &str) -> Result<String, &'static str> {
        match self {
            HierarchySeparator::Slash if name.contains('.') => Err(
                "Mailbox names cannot contain \".\" here (Maildir++ keeps it between levels; the hierarchy separator is \"/\")",
            ),
            HierarchySeparator::Slash => Ok(name.to_owned()),
            HierarchySeparator::Dot if name.contains('/') => Err(
                "Mailbox names cannot contain \"/\" here (Maildir++ cannot keep it in a folder name; the hierarchy separator is \".\")",
            ),
            HierarchySeparator::Dot => Ok(name.replace('.', "/")),
        }
    }

    /// A store name as the client reads it (before any UTF-8 decoding).
    pub fn shown(self, name: &str) -> String {
        match self {
            HierarchySeparator::Slash => name.to_owned(),
            HierarchySeparator::Dot => name.replace('/', "."),
        }
    }
}

impl ImapSession {
    /// The separator, quoted as LIST, LSUB and NAMESPACE show it.
    pub(super) fn delimiter(&self) -> &'static str {
        match self.cfg.hierarchy_separator {
            HierarchySeparator::Slash => "\"/\"",
            HierarchySeparator::Dot => "\".\"",
        }
    }

    /// Whether a LIST pattern matches a name as the client reads it (`%`
    /// stops at the separator the client sees).
    pub(super) fn pattern_matches(&self, pattern: &str, shown: &str) -> bool {
        let sep = match self.cfg.hierarchy_separator {
            HierarchySeparator::Slash => b'/',
            HierarchySeparator::Dot => b'.',
        };
        super::list::wildcard_with(pattern, shown, sep)
    }
}

#[cfg(test)]
mod tests {
    use super::HierarchySeparator::{Dot, Slash};

    #[test]
    fn names_cross_the_separator_both_ways() {
        assert_eq!(
            Slash.to_store("Archive/2024").as_deref(),
            Ok("Archive/2024")
        );
        assert!(Slash.to_store("john.doe").is_err());
        assert_eq!(Dot.to_store("Archive.2024").as_deref(), Ok("Archive/2024"));
        assert!(Dot.to_store("a/b").is_err());
        assert_eq!(Dot.shown("Archive/2024"), "Archive.2024");
        assert_eq!(Slash.shown("Archive/2024"), "Archive/2024");
        for name in ["INBOX", "Archive/2024/Q1", "Entw&APw-rfe/x"] {
            let shown = Dot.shown(name);
            assert_eq!(Dot.to_store(&shown).as_deref(), Ok(name));
        }
    }
}
