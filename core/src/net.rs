//! Networks (CIDR lists) used to decide whom to trust.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A list of networks. An empty list contains no address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks(Vec<IpNet>);

/// A network in a list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a network in CIDR form (like 10.0.20.0/24 or fd00::/8): {0:?}")]
pub struct BadNetwork(pub String);

impl Networks {
    /// No network at all.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Parses each entry as `addr/prefix` or a bare address (a /32 or /128).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BadNetwork> {
        let mut nets = Vec::new();
        for e in entries {
            let e = e.trim();
            let net = match IpNet::from_str(e) {
                Ok(n) => n,
                Err(_) => match IpAddr::from_str(e) {
                    Ok(a) => IpNet::from(a),
                    Err(_) => return Err(BadNetwork(e.to_owned())),
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether `addr` lies in one of the networks. IPv4-mapped IPv6
    /// addresses (`::ffff:10.0.20.5`) are compared as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|n| n.contains(&addr))
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_mapped() {
        let n = Networks::parse(["10.0.20.0/24", "::1"]).unwrap();
        assert!(n.contains("10.0.20.7".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.20.7".parse().unwrap()));
        assert!(!n.contains("10.0.21.7".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(Networks::parse(["10.0.0.0/33"]).is_err());
        assert!(!Networks::none().contains("127.0.0.1".parse().unwrap()));
    }
}
