//! Admission: the connection limits of every listener, by real client
//! address (the PROXY source where a listener requires PROXY).
//!
//! Each [`Service`] has its own budget, so a flood on one protocol (idle
//! IMAP connections, say) cannot take the places of another (the MX). The
//! runtime keeps one [`ConnectionTable`] for the process, asks
//! [`ConnectionTable::admit`] when a session's client address is known and
//! calls [`ConnectionTable::release`] when the session ends.

use crate::net::Networks;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The services with separate connection budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// SMTP from other servers (MX).
    Mx,
    /// Message submission (587, 465) from users.
    Submission,
    /// IMAP.
    Imap,
    /// The HTTP monitoring listener (`/metrics`, probes): its own small
    /// budget, so a flood of HTTP requests cannot take mail places.
    Http,
}

impl Service {
    fn index(self) -> usize {
        match self {
            Service::Mx => 0,
            Service::Submission => 1,
            Service::Imap => 2,
            Service::Http => 3,
        }
    }
}

/// The limits of one service. Zero means "no limit" for the rate only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections in all (Postfix `default_process_limit` 100;
    /// Dovecot `process_limit` 1000 for imap-login).
    pub max_connections: usize,
    /// Concurrent connections from one address (Postfix
    /// `smtpd_client_connection_count_limit` 50; Dovecot
    /// `mail_max_userip_connections` 10 per user and address).
    pub max_per_ip: u32,
    /// New connections from one address per [`Limits::rate_window`]
    /// (Postfix `smtpd_client_connection_rate_limit`: off in Postfix, 10 on
    /// the MX here as the reference deployment sets it). Zero: no limit.
    pub max_rate: u32,
    /// Transactions (MAIL commands) from one address per
    /// [`Limits::rate_window`] (Postfix `smtpd_client_message_rate_limit`:
    /// off in Postfix, 30 on the MX here as the reference deployment sets
    /// it). Zero: no limit.
    pub max_message_rate: u32,
    /// The window of the rates (Postfix `anvil_rate_time_unit`, 60 s).
    pub rate_window: Duration,
}

impl Limits {
    /// Postfix's smtpd defaults.
    pub fn smtp() -> Self {
        Self {
            max_connections: 100,
            max_per_ip: 50,
            max_rate: 0,
            max_message_rate: 0,
            rate_window: Duration::from_secs(60),
        }
    }

    /// The MX: Postfix's smtpd defaults with the reference deployment's
    /// rates (10 connections and 30 messages a minute per client).
    pub fn mx() -> Self {
        Self {
            max_rate: 10,
            max_message_rate: 30,
            ..Self::smtp()
        }
    }

    /// Limits that let 1,000 IMAP connections from 10 addresses in.
    pub fn imap() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 100,
            max_rate: 0,
            max_message_rate: 0,
            rate_window: Duration::from_secs(60),
        }
    }

    /// The monitoring listener: a scraper and a few probes need a handful
    /// of connections, so 64 in all and 16 from one address.
    pub fn http() -> Self {
        Self {
            max_connections: 64,
            max_per_ip: 16,
            max_rate: 0,
            max_message_rate: 0,
            rate_window: Duration::from_secs(60),
        }
    }
}

/// The admission settings of every service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Limits for MX, submission, IMAP and HTTP, in that order.
    pub limits: [Limits; 4],
    /// Addresses no per-address limit applies to (Postfix
    /// `smtpd_client_event_limit_exceptions`): health checks, Roundcube.
    pub exempt: Networks,
    /// The most addresses whose rate windows are remembered; beyond it the
    /// oldest windows are forgotten (memory stays bounded under a flood of
    /// distinct addresses).
    pub max_tracked: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            limits: [Limits::mx(), Limits::smtp(), Limits::imap(), Limits::http()],
            exempt: Networks::none(),
            max_tracked: 100_000,
        }
    }
}

impl AdmissionConfig {
    /// The limits of `service`.
    pub fn limits(&self, service: Service) -> &Limits {
        &self.limits[service.index()]
    }

    /// The limits of `service`, to change.
    pub fn limits_mut(&mut self, service: Service) -> &mut Limits {
        &mut self.limits[service.index()]
    }
}

/// Why a connection is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The service has no free place at all.
    ServerFull,
    /// This address holds as many connections as it may.
    TooManyConnections {
        /// The client address.
        ip: IpAddr,
    },
    /// This address opened too many connections in the rate window.
    ConnectionRate {
        /// The client address.
        ip: IpAddr,
    },
}

/// A place taken by [`ConnectionTable::admit`]; give it back with
/// [`ConnectionTable::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Ticket {
    service: Service,
    ip: IpAddr,
}

#[derive(Debug, Default)]
struct Budget {
    total: usize,
    per_ip: HashMap<IpAddr, u32>,
}

/// The live connection counts and rate windows of one process.
#[derive(Debug)]
pub struct ConnectionTable {
    config: AdmissionConfig,
    budgets: [Budget; 4],
    /// (service, address) -> (window start, connections in it).
    rates: HashMap<(Service, IpAddr), (Instant, u32)>,
    /// (service, address) -> (window start, transactions in it).
    messages: HashMap<(Service, IpAddr), (Instant, u32)>,
}

impl ConnectionTable {
    /// An empty table with these limits.
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            budgets: Default::default(),
            rates: HashMap::new(),
            messages: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Connections now open for `service` (all, and from `ip`).
    pub fn open(&self, service: Service, ip: IpAddr) -> (usize, u32) {
        let b = &self.budgets[service.index()];
        (b.total, b.per_ip.get(&ip).copied().unwrap_or(0))
    }

    /// Takes a place for a connection from `ip` to `service` at `now`, or
    /// says why there is none. A refused connection takes no place but
    /// counts toward the rate (as Postfix's anvil counts it).
    pub fn admit(&mut self, service: Service, ip: IpAddr, now: Instant) -> Result<Ticket, Refusal> {
        let limits = self.config.limits(service).clone();
        let exempt = self.config.exempt.contains(ip);
        let budget = &self.budgets[service.index()];
        if budget.total >= limits.max_connections {
            return Err(Refusal::ServerFull);
        }
        if !exempt && limits.max_rate > 0 {
            let max = self.config.max_tracked;
            let n = count(&mut self.rates, max, (service, ip), now, limits.rate_window);
            if n > limits.max_rate {
                return Err(Refusal::ConnectionRate { ip });
            }
        }
        let budget = &mut self.budgets[service.index()];
        let here = budget.per_ip.get(&ip).copied().unwrap_or(0);
        if !exempt && here >= limits.max_per_ip {
            return Err(Refusal::TooManyConnections { ip });
        }
        budget.per_ip.insert(ip, here + 1);
        budget.total += 1;
        Ok(Ticket { service, ip })
    }

    /// Gives back a place taken by [`Self::admit`].
    pub fn release(&mut self, ticket: Ticket) {
        let budget = &mut self.budgets[ticket.service.index()];
        budget.total = budget.total.saturating_sub(1);
        if let Some(n) = budget.per_ip.get_mut(&ticket.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                budget.per_ip.remove(&ticket.ip);
            }
        }
    }

    /// Counts a transaction (a MAIL command) from `ip` on `service` at
    /// `now`; false when it goes past the message rate (the session then
    /// answers `450 4.7.1`). Exempt addresses are not counted.
    pub fn message(&mut self, service: Service, ip: IpAddr, now: Instant) -> bool {
        let limits = self.config.limits(service);
        let (max_rate, window) = (limits.max_message_rate, limits.rate_window);
        if max_rate == 0 || self.config.exempt.contains(ip) {
            return true;
        }
        let max = self.config.max_tracked;
        count(&mut self.messages, max, (service, ip), now, window) <= max_rate
    }

    /// How many rate windows are remembered (each kind bounded by
    /// `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.rates.len() + self.messages.len()
    }
}

/// Counts one more event in `key`'s current window; returns the count.
/// At most `max_tracked` windows are kept: past it, every window that has
/// ended is forgotten, and if none has, the oldest.
fn count(
    map: &mut HashMap<(Service, IpAddr), (Instant, u32)>,
    max_tracked: usize,
    key: (Service, IpAddr),
    now: Instant,
    window: Duration,
) -> u32 {
    if map.len() >= max_tracked && !map.contains_key(&key) {
        map.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        if map.len() >= max_tracked {
            if let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
    }
    let entry = map.entry(key).or_insert((now, 0));
    if now.saturating_duration_since(entry.0) >= window {
        *entry = (now, 0);
    }
    entry.1 = entry.1.saturating_add(1);
    entry.1
}

impl Default for ConnectionTable {
    fn default() -> Self {
        Self::new(AdmissionConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn table(max: usize, per_ip: u32, rate: u32) -> ConnectionTable {
        let l = Limits {
            max_connections: max,
            max_per_ip: per_ip,
            max_rate: rate,
            max_message_rate: 2,
            rate_window: Duration::from_secs(60),
        };
        ConnectionTable::new(AdmissionConfig {
            limits: [l.clone(), l.clone(), l.clone(), l],
            exempt: Networks::parse(["10.9.0.0/16"]).expect("nets"),
            max_tracked: 4,
        })
    }

    #[test]
    fn per_ip_cap_then_release_frees_the_place() {
        let mut t = table(10, 2, 0);
        let now = Instant::now();
        let a = t.admit(Service::Mx, ip("192.0.2.1"), now).expect("1st");
        let _b = t.admit(Service::Mx, ip("192.0.2.1"), now).expect("2nd");
        assert_eq!(
            t.admit(Service::Mx, ip("192.0.2.1"), now),
            Err(Refusal::TooManyConnections {
                ip: ip("192.0.2.1")
            })
        );
        // Another address and another service are not affected.
        assert!(t.admit(Service::Mx, ip("192.0.2.2"), now).is_ok());
        assert!(t.admit(Service::Imap, ip("192.0.2.1"), now).is_ok());
        t.release(a);
        assert!(t.admit(Service::Mx, ip("192.0.2.1"), now).is_ok());
    }

    #[test]
    fn a_full_service_refuses_everyone_but_leaves_the_others() {
        let mut t = table(2, 10, 0);
        let now = Instant::now();
        let _a = t.admit(Service::Imap, ip("192.0.2.1"), now).expect("1");
        let _b = t.admit(Service::Imap, ip("192.0.2.2"), now).expect("2");
        assert_eq!(
            t.admit(Service::Imap, ip("192.0.2.3"), now),
            Err(Refusal::ServerFull)
        );
        assert!(t.admit(Service::Mx, ip("192.0.2.3"), now).is_ok());
    }

    #[test]
    fn an_http_flood_takes_no_mail_place() {
        let mut t = ConnectionTable::default();
        let now = Instant::now();
        let flood = ip("192.0.2.9");
        let admitted: Vec<Ticket> = (0..100)
            .filter_map(|_| t.admit(Service::Http, flood, now).ok())
            .collect();
        assert_eq!(admitted.len(), 16);
        assert!(t.admit(Service::Mx, flood, now).is_ok());
        assert!(t.admit(Service::Submission, flood, now).is_ok());
        assert_eq!(t.open(Service::Http, flood), (16, 16));
    }

    #[test]
    fn rate_counts_in_its_window_and_resets_after_it() {
        let mut t = table(100, 100, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            let k = t
                .admit(Service::Mx, ip("192.0.2.1"), t0)
                .expect("within rate");
            t.release(k);
        }
        assert_eq!(
            t.admit(Service::Mx, ip("192.0.2.1"), t0 + Duration::from_secs(59)),
            Err(Refusal::ConnectionRate {
                ip: ip("192.0.2.1")
            })
        );
        assert!(t
            .admit(Service::Mx, ip("192.0.2.1"), t0 + Duration::from_secs(61))
            .is_ok());
    }

    #[test]
    fn exempt_networks_skip_per_address_limits_only() {
        let mut t = table(3, 1, 1);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.admit(Service::Mx, ip("10.9.1.1"), now).is_ok());
        }
        assert_eq!(
            t.admit(Service::Mx, ip("10.9.1.1"), now),
            Err(Refusal::ServerFull)
        );
    }

    #[test]
    fn message_rate_counts_mail_commands_except_from_exempt_networks() {
        let mut t = table(100, 100, 0);
        let t0 = Instant::now();
        assert!(t.message(Service::Mx, ip("192.0.2.1"), t0));
        assert!(t.message(Service::Mx, ip("192.0.2.1"), t0));
        assert!(!t.message(Service::Mx, ip("192.0.2.1"), t0));
        assert!(t.message(Service::Submission, ip("192.0.2.1"), t0));
        assert!(t.message(Service::Mx, ip("192.0.2.1"), t0 + Duration::from_secs(60)));
        for _ in 0..10 {
            assert!(t.message(Service::Mx, ip("10.9.0.1"), t0));
        }
    }

    #[test]
    fn the_mx_defaults_are_the_reference_deployments_rates() {
        let c = AdmissionConfig::default();
        assert_eq!(c.limits(Service::Mx).max_rate, 10);
        assert_eq!(c.limits(Service::Mx).max_message_rate, 30);
        let mut t = ConnectionTable::default();
        let now = Instant::now();
        for _ in 0..10 {
            let k = t
                .admit(Service::Mx, ip("192.0.2.7"), now)
                .expect("within 10");
            t.release(k);
        }
        assert_eq!(
            t.admit(Service::Mx, ip("192.0.2.7"), now),
            Err(Refusal::ConnectionRate {
                ip: ip("192.0.2.7")
            })
        );
    }

    #[test]
    fn by_default_the_eleventh_mx_connection_in_a_minute_is_refused() {
        let mut t = ConnectionTable::default();
        let t0 = Instant::now();
        let ip = ip("203.0.113.9");
        for i in 0..10u64 {
            let k = t
                .admit(Service::Mx, ip, t0 + Duration::from_secs(i))
                .expect("within the reference deployment's 10 a minute");
            t.release(k);
        }
        assert_eq!(
            t.admit(Service::Mx, ip, t0 + Duration::from_secs(30)),
            Err(Refusal::ConnectionRate { ip })
        );
        // Submission and IMAP have no connection rate by default.
        for _ in 0..20 {
            let k = t.admit(Service::Submission, ip, t0).expect("submission");
            t.release(k);
        }
    }

    #[test]
    fn rate_memory_stays_bounded_under_many_addresses() {
        let mut t = table(1000, 1000, 5);
        let now = Instant::now();
        for i in 0..50u8 {
            let k = t
                .admit(Service::Mx, IpAddr::from([192, 0, 2, i]), now)
                .expect("admit");
            t.release(k);
            assert!(t.tracked() <= 4, "tracked {}", t.tracked());
        }
    }
}
