//! Authentication throttling across connections, as Dovecot's auth penalty:
//! each failure from an address (and for an account) makes the next failure
//! answer later, doubling from `base_delay` up to `max_delay`. The delay
//! holds back failure answers only, so the real user, who knows the
//! password, logs in at once from any address while a guesser slows down,
//! however many connections it opens. Sessions add a disconnect after
//! a few failures on one connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The throttle's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthThrottleConfig {
    /// The delay after the first failure (Dovecot `auth_failure_delay`, 2 s).
    pub base_delay: Duration,
    /// The longest delay (Dovecot's penalty stops at 15 s).
    pub max_delay: Duration,
    /// A penalty is forgotten after this long without failures.
    pub forget_after: Duration,
    /// The most addresses and accounts remembered (memory stays bounded).
    pub max_tracked: usize,
}

impl Default for AuthThrottleConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15),
            forget_after: Duration::from_secs(600),
            max_tracked: 50_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Penalty {
    failures: u32,
    last: Instant,
}

/// Failure counts per real client address and per account name.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    config: AuthThrottleConfig,
    by_ip: HashMap<IpAddr, Penalty>,
    by_account: HashMap<String, Penalty>,
}

impl AuthThrottle {
    /// An empty throttle.
    pub fn new(config: AuthThrottleConfig) -> Self {
        Self {
            config,
            by_ip: HashMap::new(),
            by_account: HashMap::new(),
        }
    }

    /// Records a failed login of `account` from `ip` at `now`; returns how
    /// long to hold the failure answer back.
    pub fn failed(&mut self, ip: IpAddr, account: &str, now: Instant) -> Duration {
        let cfg = self.config.clone();
        let ip_n = bump(&mut self.by_ip, ip, now, &cfg);
        let key = account.to_lowercase();
        let acc_n = if key.is_empty() || key.len() > 320 {
            0
        } else {
            bump(&mut self.by_account, key, now, &cfg)
        };
        delay_for(ip_n.max(acc_n), &cfg)
    }

    /// Records a successful login from `ip`: its address penalty ends.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.by_ip.remove(&ip);
    }

    /// Failures now counted for `ip` (0 once forgotten).
    pub fn failures(&self, ip: IpAddr, now: Instant) -> u32 {
        self.by_ip
            .get(&ip)
            .filter(|p| now.saturating_duration_since(p.last) < self.config.forget_after)
            .map_or(0, |p| p.failures)
    }

    /// Entries remembered (addresses and accounts).
    pub fn tracked(&self) -> usize {
        self.by_ip.len() + self.by_account.len()
    }
}

fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Penalty>,
    key: K,
    now: Instant,
    cfg: &AuthThrottleConfig,
) -> u32 {
    if map.len() >= cfg.max_tracked && !map.contains_key(&key) {
        map.retain(|_, p| now.saturating_duration_since(p.last) < cfg.forget_after);
        if map.len() >= cfg.max_tracked {
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, p)| p.last)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
    }
    let p = map.entry(key).or_insert(Penalty {
        failures: 0,
        last: now,
    });
    if now.saturating_duration_since(p.last) >= cfg.forget_after {
        p.failures = 0;
    }
    p.failures = p.failures.saturating_add(1);
    p.last = now;
    p.failures
}

fn delay_for(failures: u32, cfg: &AuthThrottleConfig) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16);
    cfg.base_delay
        .saturating_mul(1u32 << shift)
        .min(cfg.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap_across_accounts() {
        let mut t = AuthThrottle::default();
        let now = Instant::now();
        let d: Vec<u64> = (0..6)
            .map(|i| {
                t.failed(ip("192.0.2.9"), &format!("user{i}@x"), now)
                    .as_secs()
            })
            .collect();
        assert_eq!(d, vec![2, 4, 8, 15, 15, 15]);
    }

    #[test]
    fn another_address_guessing_one_account_is_slowed_too() {
        let mut t = AuthThrottle::default();
        let now = Instant::now();
        for i in 0..3u8 {
            t.failed(IpAddr::from([192, 0, 2, i]), "boss@x", now);
        }
        assert_eq!(t.failed(ip("198.51.100.1"), "BOSS@x", now).as_secs(), 15);
        assert_eq!(t.failures(ip("198.51.100.1"), now), 1);
    }

    #[test]
    fn success_clears_the_address_and_penalties_are_forgotten() {
        let mut t = AuthThrottle::default();
        let now = Instant::now();
        t.failed(ip("192.0.2.1"), "a@x", now);
        t.failed(ip("192.0.2.1"), "b@x", now);
        t.succeeded(ip("192.0.2.1"));
        assert_eq!(t.failures(ip("192.0.2.1"), now), 0);
        let later = now + Duration::from_secs(601);
        assert_eq!(t.failed(ip("192.0.2.2"), "c@x", now).as_secs(), 2);
        assert_eq!(t.failed(ip("192.0.2.2"), "d@x", later).as_secs(), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut t = AuthThrottle::new(AuthThrottleConfig {
            max_tracked: 8,
            ..AuthThrottleConfig::default()
        });
        let now = Instant::now();
        for i in 0..100u8 {
            t.failed(IpAddr::from([10, 0, 0, i]), &format!("u{i}"), now);
        }
        assert!(t.tracked() <= 16, "{}", t.tracked());
    }
}
