//! THREAD (RFC 5256 sections 4 and 5): ORDEREDSUBJECT and REFERENCES
//! over what a message's header says (Message-ID, References,
//! In-Reply-To, Subject, Date), and the `* THREAD` answer's nesting.

use super::message::header_value;
use super::mime::base_subject;

/// The threading algorithms (RFC 5256 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `ORDEREDSUBJECT`: by base subject, then by sent date.
    OrderedSubject,
    /// `REFERENCES`: by the References and In-Reply-To links.
    References,
}

/// What threading needs of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// The number the answer shows (sequence number or UID).
    pub number: u32,
    /// The Message-ID, without its angle brackets (None: none given).
    pub id: Option<String>,
    /// The parent chain, oldest first: References, or the first
    /// In-Reply-To ID.
    pub references: Vec<String>,
    /// The base subject (RFC 5256 2.1).
    pub subject: String,
    /// Whether the subject said it is a reply or a forward.
    pub reply: bool,
    /// The sent date (the Date field, else INTERNALDATE), Unix seconds.
    pub date: i64,
}

impl Msg {
    /// Reads a message's header; `internal_date` stands in for a missing
    /// or unreadable Date.
    pub fn from_header(number: u32, header: &[u8], internal_date: i64) -> Self {
        let ids = |name: &str| {
            header_value(header, name)
                .map(|v| msg_ids(&v))
                .unwrap_or_default()
        };
        let mut references = ids("References");
        if references.is_empty() {
            references = ids("In-Reply-To").into_iter().take(1).collect();
        }
        let raw_subject = header_value(header, "Subject").unwrap_or_default();
        let subject = base_subject(&raw_subject);
        let plain: String = raw_subject
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let date = header_value(header, "Date")
            .and_then(|d| mail_parser::DateTime::parse_rfc822(d.trim()))
            .map_or(internal_date, |d| d.to_timestamp());
        Msg {
            number,
            id: ids("Message-ID").into_iter().next(),
            references,
            reply: !subject.is_empty() && plain != subject,
            subject,
            date,
        }
    }
}

/// `<a@b>` IDs in a field, without brackets.
fn msg_ids(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let id = rest[open + 1..open + close].trim();
        if !id.is_empty() && id.contains('@') {
            out.push(id.to_owned());
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// One node of a thread: a message (or a placeholder for one that is
/// not here) and its replies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The `* THREAD` line's threads, each `(...)`, for these messages.
pub fn threads(algorithm: Algorithm, msgs: &[Msg]) -> String {
    let (nodes, roots) = match algorithm {
        Algorithm::OrderedSubject => ordered_subject(msgs),
        Algorithm::References => references(msgs),
    };
    let mut out = String::new();
    for r in roots {
        out.push('(');
        members(&nodes, msgs, r, &mut out);
        out.push(')');
    }
    out
}

/// A thread's members: the message, then one reply inline or several
/// nested (RFC 5256 4: `3 6 (4 23)(44 7 96)`).
fn members(nodes: &[Node], msgs: &[Msg], n: usize, out: &mut String) {
    let node = &nodes[n];
    if let Some(m) = node.msg {
        out.push_str(&msgs[m].number.to_string());
    }
    match node.children.as_slice() {
        [] => {}
        [only] => {
            if node.msg.is_some() {
                out.push(' ');
            }
            members(nodes, msgs, *only, out);
        }
        many => {
            if node.msg.is_some() {
                out.push(' ');
            }
            for c in many {
                out.push('(');
                members(nodes, msgs, *c, out);
                out.push(')');
            }
        }
    }
}

/// ORDEREDSUBJECT (RFC 5256 5): one thread per base subject, its first
/// message (by sent date) the parent of all the others.
fn ordered_subject(msgs: &[Msg]) -> (Vec<Node>, Vec<usize>) {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        (msgs[a].subject.as_str(), msgs[a].date, msgs[a].number).cmp(&(
            msgs[b].subject.as_str(),
            msgs[b].date,
            msgs[b].number,
        ))
    });
    let mut nodes: Vec<Node> = (0..msgs.len())
        .map(|i| Node {
            msg: Some(i),
            ..Node::default()
        })
        .collect();
    let mut roots: Vec<usize> = Vec::new();
    for i in order {
        match roots.last() {
            Some(&r) if msgs[r].subject == msgs[i].subject => nodes[r].children.push(i),
            _ => roots.push(i),
        }
    }
    roots.sort_by_key(|&r| (msgs[r].date, msgs[r].number));
    (nodes, roots)
}

/// REFERENCES (RFC 5256 4): link by References/In-Reply-To, prune the
/// placeholders, gather roots with one base subject, sort by sent date.
fn references(msgs: &[Msg]) -> (Vec<Node>, Vec<usize>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut node_for = |id: &str, nodes: &mut Vec<Node>| -> usize {
        *ids.entry(id.to_owned()).or_insert_with(|| {
            nodes.push(Node::default());
            nodes.len() - 1
        })
    };
    for (i, m) in msgs.iter().enumerate() {
        // (1A) The message's node: a placeholder waiting for it, or new
        // (a missing or repeated Message-ID is a unique one).
        let me = match &m.id {
            Some(id) => {
                let n = node_for(id, &mut nodes);
                if nodes[n].msg.is_none() {
                    n
                } else {
                    nodes.push(Node::default());
                    nodes.len() - 1
                }
            }
            None => {
                nodes.push(Node::default());
                nodes.len() - 1
            }
        };
        nodes[me].msg = Some(i);
        // (1B) Link the references in order, keeping links already made.
        let chain: Vec<usize> = m
            .references
            .iter()
            .map(|r| node_for(r, &mut nodes))
            .collect();
        for w in chain.windows(2) {
            let (p, c) = (w[0], w[1]);
            if p != c && nodes[c].parent.is_none() && !reaches(&nodes, c, p) {
                link(&mut nodes, p, c);
            }
        }
        // (1C) The message's parent is its last reference, replacing any.
        if let Some(old) = nodes[me].parent.take() {
            nodes[old].children.retain(|&x| x != me);
        }
        if let Some(&p) = chain.last() {
            if p != me && !reaches(&nodes, me, p) {
                link(&mut nodes, p, me);
            }
        }
    }
    // (2) The roots, (4) pruned of placeholders.
    let roots: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].parent.is_none())
        .collect();
    let mut kept = Vec::new();
    for r in roots {
        prune(&mut nodes, r);
        if nodes[r].msg.is_some() || !nodes[r].children.is_empty() {
            if nodes[r].msg.is_none() && nodes[r].children.len() == 1 {
                // A placeholder root with one child: the child is the root.
                let c = nodes[r].children[0];
                nodes[c].parent = None;
                kept.push(c);
            } else {
                kept.push(r);
            }
        }
    }
    // (5) Sort every sibling list and (6) gather roots by base subject.
    for &r in &kept {
        sort_tree(&mut nodes, msgs, r);
    }
    kept.sort_by_key(|&r| first_date(&nodes, msgs, r));
    let roots = gather(&mut nodes, msgs, kept);
    let mut roots = roots;
    for &r in &roots {
        sort_tree(&mut nodes, msgs, r);
    }
    roots.sort_by_key(|&r| first_date(&nodes, msgs, r));
    (nodes, roots)
}

fn link(nodes: &mut [Node], parent: usize, child: usize) {
    nodes[child].parent = Some(parent);
    nodes[parent].children.push(child);
}

/// Whether `to` is `from` or below it (a link from `to` to `from` would
/// make a loop).
fn reaches(nodes: &[Node], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = 0usize;
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        seen += 1;
        if seen > nodes.len() {
            return true;
        }
        stack.extend(nodes[n].children.iter().copied());
    }
    false
}

/// (4) Placeholders without children go; one with children gives them
/// to its parent (at the root, only a single child is promoted).
fn prune(nodes: &mut [Node], n: usize) {
    let children = std::mem::take(&mut nodes[n].children);
    let mut kept = Vec::new();
    for c in children {
        prune(nodes, c);
        if nodes[c].msg.is_some() {
            kept.push(c);
        } else {
            // A placeholder below the root: its children take its place.
            for g in std::mem::take(&mut nodes[c].children) {
                nodes[g].parent = Some(n);
                kept.push(g);
            }
        }
    }
    nodes[n].children = kept;
}

/// The sent date a thread is sorted by: its message's, or (placeholder)
/// its first child's.
fn first_date(nodes: &[Node], msgs: &[Msg], n: usize) -> (i64, u32) {
    match nodes[n].msg {
        Some(m) => (msgs[m].date, msgs[m].number),
        None => nodes[n]
            .children
            .first()
            .map_or((i64::MAX, u32::MAX), |&c| first_date(nodes, msgs, c)),
    }
}

fn sort_tree(nodes: &mut [Node], msgs: &[Msg], n: usize) {
    let mut children = std::mem::take(&mut nodes[n].children);
    for &c in &children {
        sort_tree(nodes, msgs, c);
    }
    children.sort_by_key(|&c| first_date(nodes, msgs, c));
    nodes[n].children = children;
}

/// The subject a root stands for: its message's, or its first child's.
fn root_subject<'a>(nodes: &[Node], msgs: &'a [Msg], r: usize) -> Option<(&'a str, bool)> {
    let m = nodes[r]
        .msg
        .or_else(|| nodes[r].children.first().and_then(|&c| nodes[c].msg))?;
    let s = msgs[m].subject.as_str();
    (!s.is_empty()).then_some((s, msgs[m].reply))
}

/// (6) Roots with one base subject become one thread.
fn gather(nodes: &mut Vec<Node>, msgs: &[Msg], roots: Vec<usize>) -> Vec<usize> {
    let mut table: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for &r in &roots {
        let Some((s, reply)) = root_subject(nodes, msgs, r) else {
            continue;
        };
        match table.get(s) {
            None => {
                table.insert(s.to_owned(), r);
            }
            Some(&old) => {
                // A placeholder is the better root, and so is a subject
                // that is not a reply (RFC 5256 4, step 6B).
                let old_dummy = nodes[old].msg.is_none();
                let old_reply = root_subject(nodes, msgs, old).is_some_and(|x| x.1);
                if (!old_dummy && nodes[r].msg.is_none()) || (old_reply && !reply) {
                    table.insert(s.to_owned(), r);
                }
            }
        }
    }
    let mut out: Vec<usize> = Vec::new();
    for r in roots {
        if nodes[r].parent.is_some() {
            // Already gathered under another root.
            continue;
        }
        let Some((s, reply)) = root_subject(nodes, msgs, r) else {
            out.push(r);
            continue;
        };
        let s = s.to_owned();
        let Some(&t) = table.get(&s) else {
            out.push(r);
            continue;
        };
        if t == r {
            if !out.contains(&r) {
                out.push(r);
            }
            continue;
        }
        let (t_dummy, r_dummy) = (nodes[t].msg.is_none(), nodes[r].msg.is_none());
        let t_reply = root_subject(nodes, msgs, t).is_some_and(|x| x.1);
        if t_dummy && r_dummy {
            for c in std::mem::take(&mut nodes[r].children) {
                link(nodes, t, c);
            }
        } else if t_dummy || (!t_reply && reply) {
            link(nodes, t, r);
        } else if r_dummy {
            // The table's message goes under this placeholder, which
            // takes its place.
            link(nodes, r, t);
            table.insert(s, r);
            out.retain(|&x| x != t);
            out.push(r);
        } else {
            // Neither is a reply of the other: a new placeholder holds both.
            nodes.push(Node::default());
            let d = nodes.len() - 1;
            link(nodes, d, t);
            link(nodes, d, r);
            table.insert(s, d);
            out.retain(|&x| x != t);
            out.push(d);
        }
    }
    out.retain(|&r| nodes[r].parent.is_none());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(number: u32, id: &str, refs: &[&str], subject: &str, date: i64) -> Msg {
        let base = base_subject(subject);
        Msg {
            number,
            id: (!id.is_empty()).then(|| id.to_owned()),
            references: refs.iter().map(|s| (*s).to_owned()).collect(),
            reply: base != subject.to_lowercase(),
            subject: base,
            date,
        }
    }

    #[test]
    fn references_link_replies_and_missing_parents() {
        let m = [
            msg(1, "a@x", &[], "Plan", 10),
            msg(2, "b@x", &["a@x"], "Re: Plan", 20),
            msg(3, "c@x", &["a@x", "b@x"], "Re: Plan", 30),
            msg(4, "d@x", &["a@x"], "Re: Plan", 25),
            msg(5, "e@x", &["gone@x"], "Other", 5),
            msg(6, "f@x", &["gone@x"], "Re: Other", 6),
            msg(7, "", &[], "Lone", 40),
        ];
        assert_eq!(
            threads(Algorithm::References, &m),
            "((5)(6))(1 (2 3)(4))(7)"
        );
    }

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        let m = [
            msg(1, "", &[], "Plan", 10),
            msg(2, "", &[], "Other", 5),
            msg(3, "", &[], "Re: Plan", 30),
            msg(4, "", &[], "Fwd: plan", 20),
        ];
        assert_eq!(threads(Algorithm::OrderedSubject, &m), "(2)(1 (4)(3))");
    }

    #[test]
    fn a_header_gives_ids_subject_and_date() {
        let h = b"Message-ID: <m1@x>\r\nIn-Reply-To: <p@x> (comment)\r\nSubject: Re: Hi\r\nDate: Thu, 1 Jan 1970 00:01:40 +0000\r\n\r\n";
        let m = Msg::from_header(9, h, 0);
        assert_eq!(m.id.as_deref(), Some("m1@x"));
        assert_eq!(m.references, vec!["p@x".to_owned()]);
        assert_eq!((m.subject.as_str(), m.reply, m.date), ("hi", true, 100));
    }
}
