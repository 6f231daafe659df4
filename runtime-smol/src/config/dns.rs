//! `[dns]`: the resolver behind message authentication (SPF, DKIM, DMARC,
//! ARC lookups).
//!
//! ```toml
//! [dns]
//! servers = ["10.96.0.10:53"]   # default: the nameservers of /etc/resolv.conf
//! timeout_ms = 5000             # one query's wait for an answer
//! attempts = 2                  # tries per query and server
//! cache_entries = 10000         # answers kept (TTL-bound), per record type
//! ```
//!
//! | key                 | default | allowed          |
//! |---------------------|---------|------------------|
//! | `dns.timeout_ms`    | 5000    | 100 to 60,000    |
//! | `dns.attempts`      | 2       | 1 to 5           |
//! | `dns.cache_entries` | 10000   | 0 to 1,000,000   |
//! | `dns.servers`       | resolv.conf | at most 8 `ip:port` |

use super::{ConfigError, Range};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// The most name servers listed.
const MAX_SERVERS: usize = 8;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    servers: Option<Spanned<Vec<String>>>,
    timeout_ms: Option<Spanned<u64>>,
    attempts: Option<Spanned<u64>>,
    cache_entries: Option<Spanned<u64>>,
}

/// The checked `[dns]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers asked, in order; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// One query's timeout.
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// Entries each answer cache holds (0: no cache).
    pub cache_entries: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_millis(5000),
            attempts: 2,
            cache_entries: 10_000,
        }
    }
}

impl RawDns {
    /// Checks the section.
    pub(super) fn check(
        &self,
        at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    ) -> Result<DnsConfig, ConfigError> {
        let d = DnsConfig::default();
        let mut servers = Vec::new();
        if let Some(list) = &self.servers {
            if list.get_ref().len() > MAX_SERVERS {
                return Err(at(
                    list.span(),
                    "dns.servers",
                    format!("more than {MAX_SERVERS} servers"),
                ));
            }
            for s in list.get_ref() {
                let addr = s.parse::<SocketAddr>().map_err(|_| {
                    at(
                        list.span(),
                        "dns.servers",
                        format!("{s:?} is not an ip:port (like \"10.96.0.10:53\")"),
                    )
                })?;
                servers.push(addr);
            }
        }
        let timeout =
            Range("dns.timeout_ms", 5000, 100, 60_000).get(self.timeout_ms.as_ref(), at)?;
        let attempts = Range("dns.attempts", 2, 1, 5).get(self.attempts.as_ref(), at)?;
        let cache = Range("dns.cache_entries", 10_000, 0, 1_000_000)
            .get(self.cache_entries.as_ref(), at)?;
        Ok(DnsConfig {
            servers,
            timeout: Duration::from_millis(timeout),
            attempts: usize::try_from(attempts).unwrap_or(d.attempts),
            cache_entries: usize::try_from(cache).unwrap_or(d.cache_entries),
        })
    }
}
