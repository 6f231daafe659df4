//! Message authentication on the MX: what the SPF, DKIM, DMARC and ARC
//! results of an inbound message mean for it. The runtime does the DNS and
//! the cryptography (with `mail-auth`) and passes the results in, one
//! [`AuthResult`] per method, with the DMARC policy of the From domain and a
//! sample value for `pct` drawn by the runtime (the core has no randomness).
//!
//! The verdict follows RFC 7489 section 6.6.4 and Rspamd's habits:
//! - DMARC `fail` under `p=reject` refuses the message at the end of DATA
//!   (`550 5.7.1`), under `p=quarantine` delivers it to the Junk folder;
//! - `pct` applies the policy to that share of failing messages; the others
//!   get the next weaker policy (reject becomes quarantine, quarantine
//!   becomes none);
//! - a DNS temporary error (`temperror`) never refuses or quarantines: the
//!   message is accepted and the result is recorded in its
//!   `Authentication-Results` header;
//! - each action is a setting and can be turned off.
//!
//! [`strip_own_results`] removes the `Authentication-Results` headers that
//! claim our authserv-id (RFC 8601 section 5): only ours may.

use crate::policy::delivery::MessageRefusal;

/// The result of one authentication method (RFC 8601 section 2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthResult {
    /// The method passed.
    Pass,
    /// The method failed.
    Fail,
    /// SPF `~all`: weak failure.
    SoftFail,
    /// The domain makes no claim (SPF `?all`, a DKIM signature that did
    /// not verify for a reason that is not a failure).
    Neutral,
    /// Nothing to check (no record, no signature).
    #[default]
    None,
    /// A temporary error (DNS unreachable, timeout).
    TempError,
    /// A permanent error (a broken record or signature).
    PermError,
}

/// The policy a DMARC record asks for (`p=`, or `sp=` for a subdomain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DmarcPolicy {
    /// `p=none`, or no record.
    #[default]
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

/// What the runtime found out about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFacts {
    /// SPF for the MAIL FROM identity (the HELO identity when `<>`).
    pub spf: AuthResult,
    /// The best DKIM result over the message's signatures.
    pub dkim: AuthResult,
    /// The ARC chain.
    pub arc: AuthResult,
    /// DMARC for the From domain.
    pub dmarc: AuthResult,
    /// The record's `p=`.
    pub policy: DmarcPolicy,
    /// The record's `sp=` (`p=` when the record has none).
    pub subdomain_policy: DmarcPolicy,
    /// Whether the record was not found at the From domain itself but at
    /// a parent (the organisational domain): the From domain is then a
    /// subdomain under that record, and `sp=` applies (RFC 7489 6.3 and
    /// 6.6.3).
    pub inherited: bool,
    /// The record's `pct` (0 to 100; 100 without the tag).
    pub pct: u8,
    /// A value drawn uniformly from 0 to 99 by the runtime for this message;
    /// the policy applies when it is below `pct`.
    pub sample: u8,
}

impl Default for AuthFacts {
    fn default() -> Self {
        AuthFacts {
            spf: AuthResult::None,
            dkim: AuthResult::None,
            arc: AuthResult::None,
            dmarc: AuthResult::None,
            policy: DmarcPolicy::None,
            subdomain_policy: DmarcPolicy::None,
            inherited: false,
            pct: 100,
            sample: 0,
        }
    }
}

/// Which DMARC actions are taken (`[auth]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Refuse DMARC failures under `p=reject`; when off they go to Junk
    /// (if `quarantine` is on) or are accepted.
    pub reject: bool,
    /// Deliver DMARC failures under `p=quarantine` to the Junk folder.
    pub quarantine: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            reject: true,
            quarantine: true,
        }
    }
}

/// What becomes of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Deliver as usual.
    Accept,
    /// Deliver to the Junk folder.
    Junk,
    /// Refuse at the end of DATA with this reason.
    Reject(MessageRefusal),
}

/// The policy that applies to the From domain: `sp=` when the record was
/// found at the organisational domain for a subdomain of it, else `p=`.
pub fn applied_policy(facts: &AuthFacts) -> DmarcPolicy {
    if facts.inherited {
        facts.subdomain_policy
    } else {
        facts.policy
    }
}

/// The verdict for a message with these results.
pub fn verdict(settings: &AuthSettings, facts: &AuthFacts) -> AuthVerdict {
    if facts.dmarc != AuthResult::Fail {
        // pass, none, temperror (never acted on), permerror (a broken
        // record publishes no usable policy: RFC 7489 6.6.3).
        return AuthVerdict::Accept;
    }
    let sampled = facts.sample < facts.pct.min(100);
    let policy = match (applied_policy(facts), sampled) {
        (p, true) => p,
        (DmarcPolicy::Reject, false) => DmarcPolicy::Quarantine,
        (_, false) => DmarcPolicy::None,
    };
    match policy {
        DmarcPolicy::Reject if settings.reject => AuthVerdict::Reject(MessageRefusal::DmarcReject),
        DmarcPolicy::Reject | DmarcPolicy::Quarantine if settings.quarantine => AuthVerdict::Junk,
        _ => AuthVerdict::Accept,
    }
}

/// The `Authentication-Results` header (CRLF-ended) of a message whose
/// checks did not finish within the time budget: every method `temperror`.
pub fn budget_exhausted_header(authserv_id: &str) -> String {
    let mut h = format!("Authentication-Results: {authserv_id}");
    for method in ["spf", "dkim", "arc", "dmarc"] {
        h.push_str(";\r\n\t");
        h.push_str(method);
        h.push_str("=temperror reason=\"DNS time budget exhausted\"");
    }
    h.push_str("\r\n");
    h
}

/// Adds `method=none` to a CRLF-ended `Authentication-Results` header,
/// for a method that had nothing to check (a message without a DKIM
/// signature), so every method is named (RFC 8601 2.7).
pub fn add_none(header: &mut String, method: &str) {
    let body = header.trim_end_matches(['\r', '\n']).len();
    header.truncate(body);
    header.push_str(";\r\n\t");
    header.push_str(method);
    header.push_str("=none\r\n");
}

/// Sets the `policy.dmarc=` property of a CRLF-ended
/// `Authentication-Results` header to `policy` (the one that applied:
/// `sp=` for a subdomain). A header without the property is left alone.
pub fn set_dmarc_policy(header: &mut String, policy: DmarcPolicy) {
    const KEY: &str = "policy.dmarc=";
    let Some(at) = header.find(KEY) else {
        return;
    };
    let start = at + KEY.len();
    let end = header[start..]
        .find(|c: char| c == ';' || c == '(' || c.is_ascii_whitespace())
        .map_or(header.len(), |i| start + i);
    let word = match policy {
        DmarcPolicy::None => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    };
    header.replace_range(start..end, word);
}

/// The facts of a message whose checks did not finish in time.
pub fn budget_exhausted_facts() -> AuthFacts {
    AuthFacts {
        spf: AuthResult::TempError,
        dkim: AuthResult::TempError,
        arc: AuthResult::TempError,
        dmarc: AuthResult::TempError,
        ..AuthFacts::default()
    }
}

/// The message without the `Authentication-Results` header fields whose
/// authserv-id is `authserv_id` (compared without case), or `None` when it
/// has none. Only the header section is looked at; folded fields are
/// removed whole.
pub fn strip_own_results(data: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    strip_fields(data, |field| claims(field, authserv_id))
}

/// The message without the header fields (with their continuation lines)
/// `drop` picks; None when it picks none.
pub(crate) fn strip_fields(data: &[u8], drop: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let header_end = header_section_len(data);
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < header_end {
        let end = field_end(data, pos, header_end);
        let field = &data[pos..end];
        if drop(field) {
            out.get_or_insert_with(|| data[..pos].to_vec());
        } else if let Some(o) = out.as_mut() {
            o.extend_from_slice(field);
        }
        pos = end;
    }
    let mut o = out?;
    o.extend_from_slice(&data[header_end..]);
    Some(o)
}

/// The length of the header section, without the empty line ending it.
fn header_section_len(data: &[u8]) -> usize {
    let mut pos = 0;
    while pos < data.len() {
        if data[pos..].starts_with(b"\r\n") || data[pos..].starts_with(b"\n") {
            return pos;
        }
        pos = line_end(data, pos);
    }
    data.len()
}

fn line_end(data: &[u8], from: usize) -> usize {
    match memchr::memchr(b'\n', &data[from..]) {
        Some(i) => from + i + 1,
        None => data.len(),
    }
}

/// Where the field starting at `from` ends: after its last continuation line.
fn field_end(data: &[u8], from: usize, limit: usize) -> usize {
    let mut end = line_end(data, from);
    while end < limit && matches!(data[end], b' ' | b'\t') {
        end = line_end(data, end);
    }
    end.min(limit)
}

/// Whether a whole header field is an `Authentication-Results` naming
/// `authserv_id` as its authserv-id.
fn claims(field: &[u8], authserv_id: &str) -> bool {
    const NAME: &[u8] = b"authentication-results";
    let Some(colon) = memchr::memchr(b':', field) else {
        return false;
    };
    if !field[..colon].trim_ascii_end().eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = skip_cfws(&field[colon + 1..]);
    let id_len = value
        .iter()
        .position(|b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(value.len());
    value[..id_len].eq_ignore_ascii_case(authserv_id.as_bytes())
}

/// Skips white space and comments (nested, at most 16 deep).
fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        s = s.trim_ascii_start();
        if s.first() != Some(&b'(') {
            return s;
        }
        let mut depth = 0u32;
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' => i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if depth > 16 {
                return &[];
            }
            i += 1;
        }
        s = s.get(i + 1..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dmarc: AuthResult, policy: DmarcPolicy, pct: u8, sample: u8) -> AuthFacts {
        AuthFacts {
            dmarc,
            policy,
            pct,
            sample,
            ..AuthFacts::default()
        }
    }

    const ALL: AuthSettings = AuthSettings {
        reject: true,
        quarantine: true,
    };

    #[test]
    fn reject_policy_refuses_a_failure() {
        let f = facts(AuthResult::Fail, DmarcPolicy::Reject, 100, 99);
        assert_eq!(
            verdict(&ALL, &f),
            AuthVerdict::Reject(MessageRefusal::DmarcReject)
        );
        let reply = crate::smtp::replies::message_refused(&MessageRefusal::DmarcReject);
        assert_eq!((reply.code, &*reply.status), (550, "5.7.1"));
    }

    #[test]
    fn quarantine_policy_delivers_to_junk() {
        let f = facts(AuthResult::Fail, DmarcPolicy::Quarantine, 100, 0);
        assert_eq!(verdict(&ALL, &f), AuthVerdict::Junk);
    }

    #[test]
    fn none_policy_and_passes_are_accepted() {
        let f = facts(AuthResult::Fail, DmarcPolicy::None, 100, 0);
        assert_eq!(verdict(&ALL, &f), AuthVerdict::Accept);
        for r in [
            AuthResult::Pass,
            AuthResult::None,
            AuthResult::Neutral,
            AuthResult::SoftFail,
        ] {
            let f = facts(r, DmarcPolicy::Reject, 100, 0);
            assert_eq!(verdict(&ALL, &f), AuthVerdict::Accept, "{r:?}");
        }
    }

    #[test]
    fn temperror_and_permerror_never_act() {
        for r in [AuthResult::TempError, AuthResult::PermError] {
            for p in [DmarcPolicy::Reject, DmarcPolicy::Quarantine] {
                let f = facts(r, p, 100, 0);
                assert_eq!(verdict(&ALL, &f), AuthVerdict::Accept, "{r:?} {p:?}");
            }
        }
    }

    #[test]
    fn pct_outside_the_sample_weakens_the_policy() {
        // pct=30: samples 0..29 get the policy, 30..99 the next weaker one.
        let f = |p, s| facts(AuthResult::Fail, p, 30, s);
        assert_eq!(
            verdict(&ALL, &f(DmarcPolicy::Reject, 29)),
            AuthVerdict::Reject(MessageRefusal::DmarcReject)
        );
        assert_eq!(
            verdict(&ALL, &f(DmarcPolicy::Reject, 30)),
            AuthVerdict::Junk
        );
        assert_eq!(
            verdict(&ALL, &f(DmarcPolicy::Quarantine, 0)),
            AuthVerdict::Junk
        );
        assert_eq!(
            verdict(&ALL, &f(DmarcPolicy::Quarantine, 30)),
            AuthVerdict::Accept
        );
        let zero = facts(AuthResult::Fail, DmarcPolicy::Reject, 0, 0);
        assert_eq!(verdict(&ALL, &zero), AuthVerdict::Junk);
    }

    #[test]
    fn a_subdomain_under_the_organisational_record_gets_sp() {
        // v=DMARC1; p=none; sp=reject found at the organisational domain.
        let sub = AuthFacts {
            dmarc: AuthResult::Fail,
            policy: DmarcPolicy::None,
            subdomain_policy: DmarcPolicy::Reject,
            inherited: true,
            ..AuthFacts::default()
        };
        assert_eq!(applied_policy(&sub), DmarcPolicy::Reject);
        assert_eq!(
            verdict(&ALL, &sub),
            AuthVerdict::Reject(MessageRefusal::DmarcReject)
        );
        // The organisational domain itself (record at the From domain): p=.
        let org = AuthFacts {
            inherited: false,
            ..sub
        };
        assert_eq!(applied_policy(&org), DmarcPolicy::None);
        assert_eq!(verdict(&ALL, &org), AuthVerdict::Accept);
        // The other way round: p=reject; sp=none spares the subdomain.
        let lax = AuthFacts {
            policy: DmarcPolicy::Reject,
            subdomain_policy: DmarcPolicy::None,
            ..sub
        };
        assert_eq!(verdict(&ALL, &lax), AuthVerdict::Accept);
        // pct weakens sp= as it weakens p=.
        let sampled_out = AuthFacts {
            pct: 50,
            sample: 50,
            ..sub
        };
        assert_eq!(verdict(&ALL, &sampled_out), AuthVerdict::Junk);
    }

    #[test]
    fn actions_can_be_turned_off() {
        let reject = facts(AuthResult::Fail, DmarcPolicy::Reject, 100, 0);
        let quarantine = facts(AuthResult::Fail, DmarcPolicy::Quarantine, 100, 0);
        let no_reject = AuthSettings {
            reject: false,
            quarantine: true,
        };
        assert_eq!(verdict(&no_reject, &reject), AuthVerdict::Junk);
        let nothing = AuthSettings {
            reject: false,
            quarantine: false,
        };
        assert_eq!(verdict(&nothing, &reject), AuthVerdict::Accept);
        assert_eq!(verdict(&nothing, &quarantine), AuthVerdict::Accept);
    }

    #[test]
    fn own_results_are_stripped_others_kept() {
        let msg = b"Received: from x\r\n\
Authentication-Results: MX.example.com; spf=pass\r\n\tsmtp.mailfrom=a@b\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
authentication-results : (comment (nested)) mx.example.com;\r\n dmarc=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.com; in the body\r\n";
        let out = strip_own_results(msg, "mx.example.com").unwrap();
        assert_eq!(
            out,
            b"Received: from x\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.example.com; in the body\r\n"
        );
        assert_eq!(strip_own_results(&out, "mx.example.com"), None);
    }

    #[test]
    fn a_longer_id_is_not_ours() {
        let msg = b"Authentication-Results: mx.example.com.evil; spf=pass\r\n\r\nbody";
        assert_eq!(strip_own_results(msg, "mx.example.com"), None);
        let no_id = b"Authentication-Results:\r\n\r\n";
        assert_eq!(strip_own_results(no_id, "mx.example.com"), None);
    }

    #[test]
    fn budget_exhausted_is_temperror_and_accepted() {
        let h = budget_exhausted_header("mx.example.com");
        assert!(h.starts_with("Authentication-Results: mx.example.com;\r\n\tspf=temperror"));
        assert!(h.contains("dmarc=temperror") && h.ends_with("\"\r\n"));
        assert_eq!(
            verdict(&ALL, &budget_exhausted_facts()),
            AuthVerdict::Accept
        );
    }

    #[test]
    fn a_method_without_anything_to_check_is_named_none() {
        let mut h = "Authentication-Results: mx.example.com;\r\n\tspf=pass\r\n".to_owned();
        add_none(&mut h, "dkim");
        assert_eq!(
            h,
            "Authentication-Results: mx.example.com;\r\n\tspf=pass;\r\n\tdkim=none\r\n"
        );
    }

    #[test]
    fn the_applied_policy_is_written_into_the_header() {
        let mut h = "Authentication-Results: mx.example.com;\r\n\tdmarc=fail \
header.from=a.org.test policy.dmarc=none\r\n"
            .to_owned();
        set_dmarc_policy(&mut h, DmarcPolicy::Reject);
        assert!(h.ends_with(" policy.dmarc=reject\r\n"), "{h}");
        set_dmarc_policy(&mut h, DmarcPolicy::Quarantine);
        assert!(h.ends_with(" policy.dmarc=quarantine\r\n"), "{h}");
        let mut none = "Authentication-Results: x; spf=pass\r\n".to_owned();
        set_dmarc_policy(&mut none, DmarcPolicy::Reject);
        assert_eq!(none, "Authentication-Results: x; spf=pass\r\n");
        let mut last = "policy.dmarc=".to_owned();
        set_dmarc_policy(&mut last, DmarcPolicy::None);
        assert_eq!(last, "policy.dmarc=none");
    }

    #[test]
    fn garbage_never_panics() {
        for data in [
            &b""[..],
            b"\r\n",
            b"Authentication-Results: ((((((((((((((((((((((((x",
            b"Authentication-Results: (\\",
            b"no colon at all\r\n continued",
            b"Authentication-Results: mx.example.com",
        ] {
            let _ = strip_own_results(data, "mx.example.com");
        }
        let last = b"Authentication-Results: mx.example.com";
        assert_eq!(strip_own_results(last, "mx.example.com"), Some(Vec::new()));
    }
}
