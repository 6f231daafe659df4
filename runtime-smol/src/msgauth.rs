//! Message authentication of inbound MX mail: SPF (HELO and MAIL FROM
//! identities, for the real client address), DKIM (every signature), ARC
//! (verify only) and DMARC, done by `mail-auth` over its hickory resolver.
//! What the results mean for the message is
//! `postern_core::policy::msgauth`'s verdict; this module gathers them and
//! writes the `Authentication-Results` header mail-auth composes.
//!
//! hickory runs on tokio: every lookup runs inside `async_compat::Compat`,
//! which polls it on a smol executor thread while its sockets and timers
//! live on async-compat's own tokio thread, so a lookup never blocks an
//! executor thread. All the DNS work of one message shares one time budget
//! (`[auth] budget_secs`); past it every result is `temperror`.
//! Answers are cached twice, both bounded: by hickory (raw records, by
//! TTL) and here (parsed SPF, DKIM and DMARC records, by TTL), each with
//! `[dns] cache_entries` entries.

use crate::config::dns::DnsConfig;
use crate::config::msgauth::AuthConfig;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    Parameters, ResolverCache, SpfResult, Txt, MX,
};
use postern_core::policy::msgauth::{
    self, budget_exhausted_facts, budget_exhausted_header, AuthFacts, AuthResult, DmarcPolicy,
};
use postern_core::smtp::Envelope;
use smol::future::FutureExt as _;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

/// One answer cache: at most `n` entries, each dropped at its TTL.
pub struct TtlCache<K, V>(Option<quick_cache::sync::Cache<K, (V, Instant)>>);

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    fn new(n: usize) -> Self {
        TtlCache((n > 0).then(|| quick_cache::sync::Cache::new(n)))
    }
}

impl<K: Eq + Hash + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let c = self.0.as_ref()?;
        let (v, until) = c.get(name)?;
        if until > Instant::now() {
            Some(v)
        } else {
            c.remove(name);
            None
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.as_ref()?.remove(name).map(|(_, (v, _))| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        if let Some(c) = &self.0 {
            c.insert(key, (value, valid_until));
        }
    }
}

/// mail-auth's parameters with our caches.
type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<String, Txt>,
    TtlCache<String, Arc<Vec<MX>>>,
    TtlCache<String, Arc<Vec<Ipv4Addr>>>,
    TtlCache<String, Arc<Vec<Ipv6Addr>>>,
    TtlCache<IpAddr, Arc<Vec<String>>>,
>;

/// The resolver, its caches and the settings: one per daemon.
pub struct Verifier {
    resolver: MessageAuthenticator,
    txt: TtlCache<String, Txt>,
    mx: TtlCache<String, Arc<Vec<MX>>>,
    ipv4: TtlCache<String, Arc<Vec<Ipv4Addr>>>,
    ipv6: TtlCache<String, Arc<Vec<Ipv6Addr>>>,
    ptr: TtlCache<IpAddr, Arc<Vec<String>>>,
    /// Our hostname: the authserv-id.
    hostname: String,
    /// The `[auth]` settings.
    pub config: AuthConfig,
}

/// What the checks of one message came to.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The `Authentication-Results` header, CRLF-ended.
    pub header: String,
    /// The results, for the verdict.
    pub facts: AuthFacts,
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// `/etc/resolv.conf` could not be read and no `[dns] servers` given.
    #[error("DNS: no [dns] servers and the system's resolver configuration is unusable: {0}")]
    SystemConf(String),
}

impl Verifier {
    /// A verifier asking `dns.servers` (or the system's name servers).
    pub fn new(dns: &DnsConfig, auth: &AuthConfig, hostname: &str) -> Result<Self, VerifierError> {
        let (config, mut opts) = if dns.servers.is_empty() {
            read_system_conf().map_err(|e| VerifierError::SystemConf(e.to_string()))?
        } else {
            let mut group = NameServerConfigGroup::with_capacity(dns.servers.len() * 2);
            for s in &dns.servers {
                group.push(NameServerConfig::new(*s, ProtocolConfig::Udp));
                group.push(NameServerConfig::new(*s, ProtocolConfig::Tcp));
            }
            (
                ResolverConfig::from_parts(None, Vec::new(), group),
                ResolverOpts::default(),
            )
        };
        opts.timeout = dns.timeout;
        opts.attempts = dns.attempts;
        opts.cache_size = dns.cache_entries;
        // Names are fully qualified: no search list, no hosts file.
        opts.ndots = 0;
        opts.use_hosts_file = mail_auth::hickory_resolver::config::ResolveHosts::Never;
        let resolver = MessageAuthenticator::new(config, opts)
            .map_err(|e| VerifierError::SystemConf(e.to_string()))?;
        let n = dns.cache_entries;
        Ok(Verifier {
            resolver,
            txt: TtlCache::new(n),
            mx: TtlCache::new(n),
            ipv4: TtlCache::new(n),
            ipv6: TtlCache::new(n),
            ptr: TtlCache::new(n),
            hostname: hostname.to_owned(),
            config: auth.clone(),
        })
    }

    /// Checks one message within the time budget. Never fails: what could
    /// not be found out is a `temperror` or `permerror` in the results.
    pub async fn check(&self, env: &Envelope, data: &[u8]) -> Checked {
        let work = async_compat::Compat::new(self.check_all(env, data));
        let budget = async {
            smol::Timer::after(self.config.budget).await;
            Checked {
                header: budget_exhausted_header(&self.hostname),
                facts: budget_exhausted_facts(),
            }
        };
        work.or(budget).await
    }

    fn params<P>(&self, p: P) -> Cached<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }

    async fn check_all(&self, env: &Envelope, data: &[u8]) -> Checked {
        let ip = env.client.client.ip();
        let host = self.hostname.as_str();
        let helo = helo_domain(&env.helo);
        let mail_from = env
            .mail_from
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let spf_helo = self
            .resolver
            .verify_spf(self.params(SpfParameters::verify_ehlo(ip, helo, host)))
            .await;
        let spf_mail = if mail_from.is_empty() {
            spf_helo.clone()
        } else {
            self.resolver
                .verify_spf(
                    self.params(SpfParameters::verify_mail_from(ip, helo, host, &mail_from)),
                )
                .await
        };
        let mail_from_domain = mail_from
            .rsplit_once('@')
            .map_or(helo, |(_, d)| d)
            .to_ascii_lowercase();
        let ar = AuthenticationResults::new(host)
            .with_spf_ehlo_result(&spf_helo, ip, helo)
            .with_spf_mailfrom_result(&spf_mail, ip, &mail_from, helo);
        let mut facts = AuthFacts {
            spf: spf_result(spf_mail.result()),
            ..AuthFacts::default()
        };
        // A message mail-parser cannot read has no signature and no From
        // that could be checked: dkim, arc and dmarc stay `none`.
        let Some(msg) = AuthenticatedMessage::parse(data) else {
            return Checked {
                header: ar.to_header(),
                facts,
            };
        };
        let dkim = self.resolver.verify_dkim(self.params(&msg)).await;
        let arc = self.resolver.verify_arc(self.params(&msg)).await;
        let dmarc = self
            .resolver
            .verify_dmarc(
                self.params(
                    DmarcParameters::new(&msg, &dkim, &mail_from_domain, &spf_mail)
                        .with_domain_suffix_fn(organizational_domain),
                ),
            )
            .await;
        // mail-auth leaves both results `none` when a record exists but
        // neither identifier passed: that is a DMARC failure (RFC 7489 6.6.2).
        let dmarc = if dmarc.dmarc_record().is_some()
            && *dmarc.spf_result() == DmarcResult::None
            && *dmarc.dkim_result() == DmarcResult::None
        {
            dmarc
                .with_spf_result(DmarcResult::Fail(mail_auth::Error::NotAligned))
                .with_dkim_result(DmarcResult::Fail(mail_auth::Error::NotAligned))
        } else {
            dmarc
        };
        facts.dkim = best_dkim(dkim.iter().map(|d| d.result()));
        facts.arc = dkim_result(arc.result());
        facts.dmarc = dmarc_result(dmarc.spf_result(), dmarc.dkim_result());
        // The policy comes from the record, not from mail-auth's output:
        // mail-auth 0.7 reports `sp=` only when a relaxed alignment passed,
        // and never for a subdomain without a record of its own.
        if let Some(record) = dmarc.dmarc_record() {
            facts.policy = dmarc_policy(record.p);
            facts.subdomain_policy = dmarc_policy(record.sp);
            facts.pct = record.pct().min(100);
            facts.inherited = self.inherited(dmarc.domain()).await;
        }
        facts.sample = pct_sample();
        let ar = ar
            .with_dkim_results(&dkim, msg.from())
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc);
        let mut header = ar.to_header();
        if dkim.is_empty() {
            msgauth::add_none(&mut header, "dkim");
        }
        if dmarc.dmarc_record().is_some() {
            msgauth::set_dmarc_policy(&mut header, msgauth::applied_policy(&facts));
        }
        Checked { header, facts }
    }

    /// Whether the DMARC record that applies to `from_domain` was found
    /// above it (at its organisational domain) rather than at the domain
    /// itself. mail-auth does not tell; the domain's own `_dmarc` name is
    /// asked again (an answer cached by the walk a moment ago). A DNS
    /// error counts as not inherited: `p=` applies.
    async fn inherited(&self, from_domain: &str) -> bool {
        let name = format!("_dmarc.{}.", from_domain.trim_end_matches('.'));
        matches!(
            self.resolver
                .txt_lookup::<mail_auth::dmarc::Dmarc>(name, Some(&self.txt))
                .await,
            Err(mail_auth::Error::DnsRecordNotFound(_) | mail_auth::Error::InvalidRecordType)
        )
    }
}

/// The HELO name as an SPF identity: an address literal has none.
fn helo_domain(helo: &str) -> &str {
    if helo.starts_with('[') {
        ""
    } else {
        helo
    }
}

/// The organisational domain (RFC 7489 3.2) from the Public Suffix List:
/// the registrable domain, or the name itself when it has none.
fn organizational_domain(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

/// A uniform value from 0 to 99 for DMARC's `pct`, from the standard
/// library's per-process random keys (no generator of our own).
fn pct_sample() -> u8 {
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    u8::try_from(r % 100).unwrap_or(0)
}

fn dmarc_policy(p: mail_auth::dmarc::Policy) -> DmarcPolicy {
    match p {
        mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
        mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
        mail_auth::dmarc::Policy::None | mail_auth::dmarc::Policy::Unspecified => DmarcPolicy::None,
    }
}

fn spf_result(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dkim_result(r: &DkimResult) -> AuthResult {
    match r {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::Neutral(_) => AuthResult::Neutral,
        DkimResult::Fail(_) => AuthResult::Fail,
        DkimResult::PermError(_) => AuthResult::PermError,
        DkimResult::TempError(_) => AuthResult::TempError,
        DkimResult::None => AuthResult::None,
    }
}

/// The best of several signatures' results: a pass wins, then a failure,
/// then errors, then neutral.
fn best_dkim<'a>(results: impl Iterator<Item = &'a DkimResult>) -> AuthResult {
    let rank = |r: AuthResult| match r {
        AuthResult::Pass => 0,
        AuthResult::Fail => 1,
        AuthResult::TempError => 2,
        AuthResult::PermError => 3,
        AuthResult::Neutral | AuthResult::SoftFail => 4,
        AuthResult::None => 5,
    };
    results
        .map(dkim_result)
        .min_by_key(|r| rank(*r))
        .unwrap_or(AuthResult::None)
}

/// DMARC passes when either aligned identifier passes.
fn dmarc_result(spf: &DmarcResult, dkim: &DmarcResult) -> AuthResult {
    let one = |r: &DmarcResult| match r {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::TempError,
        DmarcResult::PermError(_) => AuthResult::PermError,
        DmarcResult::None => AuthResult::None,
    };
    let (s, d) = (one(spf), one(dkim));
    for want in [
        AuthResult::Pass,
        AuthResult::TempError,
        AuthResult::Fail,
        AuthResult::PermError,
    ] {
        if s == want || d == want {
            return want;
        }
    }
    AuthResult::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizational_domain_uses_the_public_suffix_list() {
        assert_eq!(organizational_domain("mail.example.com"), "example.com");
        assert_eq!(organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organizational_domain("example.test"), "example.test");
        assert_eq!(organizational_domain("com"), "com");
    }

    #[test]
    fn dmarc_pass_wins_and_temperror_beats_fail() {
        let fail = DmarcResult::Fail(mail_auth::Error::NotAligned);
        let temp = DmarcResult::TempError(mail_auth::Error::DnsError("x".into()));
        assert_eq!(dmarc_result(&DmarcResult::Pass, &fail), AuthResult::Pass);
        assert_eq!(dmarc_result(&fail, &DmarcResult::None), AuthResult::Fail);
        assert_eq!(dmarc_result(&temp, &temp), AuthResult::TempError);
        assert_eq!(
            dmarc_result(&DmarcResult::None, &DmarcResult::None),
            AuthResult::None
        );
    }

    #[test]
    fn pct_sample_is_in_range() {
        assert!((0..200).map(|_| pct_sample()).all(|s| s < 100));
    }

    #[test]
    fn ttl_cache_is_bounded_and_expires() {
        let c: TtlCache<String, u32> = TtlCache::new(4);
        let later = Instant::now() + std::time::Duration::from_secs(60);
        for i in 0..100 {
            c.insert(format!("k{i}"), i, later);
        }
        let kept = (0..100)
            .filter(|i| c.get(&format!("k{i}")).is_some())
            .count();
        assert!(kept <= 8, "{kept}");
        c.insert("old".into(), 1, Instant::now());
        assert_eq!(c.get("old"), None);
        let none: TtlCache<String, u32> = TtlCache::new(0);
        none.insert("x".into(), 1, later);
        assert_eq!(none.get("x"), None);
    }
}
