//! The PROXY protocol gate in front of every listener.
//!
//! HAProxy (`send-proxy-v2`) puts a binary header in front of the client's
//! bytes that names the real client address. This module decides, per
//! listener, whether such a header must come (`Required`) or must not
//! (`Forbidden`), checks that the socket peer is allowed to send one, and
//! decodes it with the `ppp` crate. It adds what Postfix and Dovecot lack:
//! a header split over many reads is buffered until complete, a v1 text
//! header is refused unless allowed, and a CRC32C TLV is verified.
//!
//! The gate is a small sans-IO machine: feed it bytes with
//! [`ProxyGate::handle_input`] until it answers [`ProxyStep::Done`] (the
//! connection goes on, with the client address and the bytes that followed
//! the header) or [`ProxyStep::Refused`] (close the connection and log the
//! error). Its deadline is [`ProxyGate::poll_timeout`].

use crate::crc32c::crc32c;
use crate::net::{canonical, Networks};
use ppp::v2;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The 12-byte signature every PROXY v2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;
/// The longest v1 header (section 2.1 of the spec: 107 bytes).
const V1_MAX: usize = 107;
/// `PP2_TYPE_CRC32C` (0x04 is `PP2_TYPE_NOOP`).
const TLV_CRC32C: u8 = 0x03;

/// What a listener wants from a PROXY header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyPolicy {
    /// No header may come; one that does closes the connection.
    Forbidden,
    /// Every connection must start with a header, from a trusted peer.
    Required {
        /// Socket peers allowed to send a header (HAProxy, or the node
        /// subnet after kube-proxy SNAT). Any other peer is refused before
        /// it sends a byte.
        trusted: Networks,
        /// Accept the v1 text header too (off by default: HAProxy's
        /// `send-proxy-v2` never sends it).
        allow_v1: bool,
    },
}

/// The gate's settings for one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Required or forbidden, and whom to trust.
    pub policy: ProxyPolicy,
    /// How long the header may take to arrive (Postfix's
    /// `smtpd_upstream_proxy_timeout`, 5 s).
    pub timeout: Duration,
    /// The longest header accepted, TLVs included.
    pub max_header: usize,
}

impl ProxyConfig {
    /// A listener that must not receive a header.
    pub fn forbidden() -> Self {
        Self {
            policy: ProxyPolicy::Forbidden,
            timeout: Duration::from_secs(5),
            max_header: 4096,
        }
    }

    /// A listener that requires a v2 header from one of `trusted`.
    pub fn required(trusted: Networks) -> Self {
        Self {
            policy: ProxyPolicy::Required {
                trusted,
                allow_v1: false,
            },
            timeout: Duration::from_secs(5),
            max_header: 4096,
        }
    }

    /// Whether the listener requires a header.
    pub fn is_required(&self) -> bool {
        matches!(self.policy, ProxyPolicy::Required { .. })
    }
}

/// Where the session's client address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// The socket peer (a listener without PROXY).
    Socket,
    /// A PROXY header's source address.
    Proxy,
    /// A PROXY `LOCAL` header (a health check): the socket addresses.
    ProxyLocal,
}

/// The addresses a session runs with after the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress {
    /// The real client: the PROXY source, or the socket peer.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub server: SocketAddr,
    /// Where `client` came from.
    pub source: AddressSource,
}

/// Why a connection was refused by the gate. Each one is logged and the
/// connection is closed without a greeting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The socket peer is not in the listener's trusted networks.
    #[error("PROXY header not accepted from untrusted peer {0}")]
    UntrustedPeer(IpAddr),
    /// The listener requires a header and the client sent something else.
    #[error("missing PROXY header on a listener that requires one")]
    Missing,
    /// A header came on a listener that forbids one.
    #[error("PROXY header on a listener that does not accept one")]
    Forbidden,
    /// A v1 text header where only v2 is accepted.
    #[error("PROXY v1 text header where only v2 is accepted")]
    V1NotAllowed,
    /// A v1 text header that does not parse.
    #[error("bad PROXY v1 header")]
    BadV1,
    /// The bytes started like the v2 signature and then differed.
    #[error("bad PROXY v2 signature")]
    BadSignature,
    /// The version nibble is not 2.
    #[error("bad PROXY version {0:#x}")]
    BadVersion(u8),
    /// The command nibble is neither LOCAL nor PROXY.
    #[error("bad PROXY command {0:#x}")]
    BadCommand(u8),
    /// Unknown address family.
    #[error("bad PROXY address family {0:#x}")]
    BadFamily(u8),
    /// Unknown or unsupported transport protocol (datagram on a stream listener).
    #[error("bad PROXY transport protocol {0:#x}")]
    BadProtocol(u8),
    /// The declared length cannot hold the addresses of the family.
    #[error("PROXY header length {length} too short for the address family ({needed} bytes)")]
    TooShort {
        /// The declared length.
        length: usize,
        /// What the family needs.
        needed: usize,
    },
    /// The declared length is over the listener's limit.
    #[error("PROXY header of {0} bytes is over the limit")]
    TooLong(usize),
    /// A TLV runs past the end of the header.
    #[error("malformed PROXY TLV")]
    BadTlv,
    /// The CRC32C TLV does not match the header.
    #[error("PROXY header CRC32C mismatch")]
    BadChecksum,
    /// The connection ended before the header was complete.
    #[error("connection closed after {0} bytes of an incomplete PROXY header")]
    Truncated(usize),
    /// The header did not arrive in time.
    #[error("timeout waiting for the PROXY header")]
    Timeout,
}

/// What the gate says after some input.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyStep {
    /// Not decided yet: feed more bytes.
    NeedMore,
    /// The connection goes on with these addresses. `rest` holds the bytes
    /// after the header (or all bytes, where no header came): they belong to
    /// the protocol (or to TLS, on an implicit-TLS listener).
    Done {
        /// The addresses to use.
        address: ClientAddress,
        /// Bytes that followed the header.
        rest: Vec<u8>,
    },
    /// Close the connection.
    Refused(ProxyError),
}

/// The PROXY gate of one connection. See the module documentation.
#[derive(Debug)]
pub struct ProxyGate {
    config: ProxyConfig,
    peer: SocketAddr,
    local: SocketAddr,
    buf: Vec<u8>,
    deadline: Option<Instant>,
    finished: bool,
}

impl ProxyGate {
    /// A gate for a connection from `peer` to `local`, accepted at `now`.
    ///
    /// On a forbidding listener the gate only sniffs: bytes that could be
    /// the start of a header are held until they prove otherwise, or until
    /// the PROXY timeout passes (then they go on to the protocol: a client
    /// that sent one empty line still gets its reply).
    pub fn new(config: ProxyConfig, peer: SocketAddr, local: SocketAddr, now: Instant) -> Self {
        let deadline = Some(now + config.timeout);
        Self {
            config,
            peer,
            local,
            buf: Vec::new(),
            deadline,
            finished: false,
        }
    }

    /// The verdict before any byte: a required listener refuses an
    /// untrusted peer at once; a forbidding one lets the protocol greet.
    pub fn on_connect(&mut self) -> ProxyStep {
        match &self.config.policy {
            ProxyPolicy::Required { trusted, .. } => {
                if trusted.contains(self.peer.ip()) {
                    ProxyStep::NeedMore
                } else {
                    self.finish(ProxyStep::Refused(ProxyError::UntrustedPeer(canonical(
                        self.peer.ip(),
                    ))))
                }
            }
            ProxyPolicy::Forbidden => ProxyStep::NeedMore,
        }
    }

    /// The addresses when no header is involved (a forbidding listener).
    pub fn socket_address(&self) -> ClientAddress {
        ClientAddress {
            client: self.peer,
            server: self.local,
            source: AddressSource::Socket,
        }
    }

    /// Bytes held while undecided.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// When the header is due, while one is awaited (or, on a forbidding
    /// listener, while a possible header start is held).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.config.policy {
            _ if self.finished => None,
            ProxyPolicy::Forbidden if self.buf.is_empty() => None,
            _ => self.deadline,
        }
    }

    /// The clock moved on: past the deadline a required header is missing
    /// (refused), and held bytes on a forbidding listener go through.
    pub fn handle_timeout(&mut self, now: Instant) -> ProxyStep {
        match self.poll_timeout() {
            Some(d) if now >= d => match self.config.policy {
                ProxyPolicy::Required { .. } => {
                    self.finish(ProxyStep::Refused(ProxyError::Timeout))
                }
                ProxyPolicy::Forbidden => {
                    let rest = std::mem::take(&mut self.buf);
                    let address = self.socket_address();
                    self.finish(ProxyStep::Done { address, rest })
                }
            },
            _ => ProxyStep::NeedMore,
        }
    }

    /// The client closed its side before the gate decided.
    pub fn handle_eof(&mut self) -> ProxyStep {
        if self.finished {
            return ProxyStep::NeedMore;
        }
        match self.config.policy {
            ProxyPolicy::Required { .. } => {
                let n = self.buf.len();
                self.finish(ProxyStep::Refused(if n == 0 {
                    ProxyError::Missing
                } else {
                    ProxyError::Truncated(n)
                }))
            }
            ProxyPolicy::Forbidden => {
                let rest = std::mem::take(&mut self.buf);
                let address = self.socket_address();
                self.finish(ProxyStep::Done { address, rest })
            }
        }
    }

    /// Feeds bytes from the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) -> ProxyStep {
        if self.finished {
            return ProxyStep::NeedMore;
        }
        // Fast path: nothing buffered and a whole decision in this read.
        let step = if self.buf.is_empty() {
            self.decide(bytes)
        } else {
            self.buf.extend_from_slice(bytes);
            let buf = std::mem::take(&mut self.buf);
            let step = self.decide(&buf);
            self.buf = buf;
            step
        };
        match step {
            Decision::NeedMore => {
                if self.buf.is_empty() {
                    self.buf.extend_from_slice(bytes);
                }
                ProxyStep::NeedMore
            }
            Decision::Done { address, consumed } => {
                let rest = if self.buf.is_empty() {
                    bytes[consumed..].to_vec()
                } else {
                    let mut buf = std::mem::take(&mut self.buf);
                    buf.drain(..consumed);
                    buf
                };
                self.finish(ProxyStep::Done { address, rest })
            }
            Decision::Refused(e) => self.finish(ProxyStep::Refused(e)),
        }
    }

    fn finish(&mut self, step: ProxyStep) -> ProxyStep {
        self.finished = true;
        self.buf = Vec::new();
        step
    }

    fn decide(&self, input: &[u8]) -> Decision {
        match &self.config.policy {
            ProxyPolicy::Forbidden => self.sniff(input),
            ProxyPolicy::Required { allow_v1, .. } => {
                let n = input.len().min(V2_SIGNATURE.len());
                if input[..n] == V2_SIGNATURE[..n] {
                    if input.len() < V2_FIXED {
                        return Decision::NeedMore;
                    }
                    return self.decode_v2(input);
                }
                let m = input.len().min(V1_PREFIX.len());
                if input[..m] == V1_PREFIX[..m] {
                    if m < V1_PREFIX.len() {
                        return Decision::NeedMore;
                    }
                    if !allow_v1 {
                        return Decision::Refused(ProxyError::V1NotAllowed);
                    }
                    return self.decode_v1(input);
                }
                if input.first() == Some(&V2_SIGNATURE[0]) {
                    Decision::Refused(ProxyError::BadSignature)
                } else {
                    Decision::Refused(ProxyError::Missing)
                }
            }
        }
    }

    /// On a forbidding listener: does the stream start like a header?
    fn sniff(&self, input: &[u8]) -> Decision {
        for prefix in [&V2_SIGNATURE[..], &V1_PREFIX[..]] {
            let n = input.len().min(prefix.len());
            if n > 0 && input[..n] == prefix[..n] {
                if n == prefix.len() {
                    return Decision::Refused(ProxyError::Forbidden);
                }
                return Decision::NeedMore;
            }
        }
        Decision::Done {
            address: self.socket_address(),
            consumed: 0,
        }
    }

    fn decode_v2(&self, input: &[u8]) -> Decision {
        let declared = usize::from(u16::from_be_bytes([input[14], input[15]]));
        if V2_FIXED + declared > self.config.max_header {
            return Decision::Refused(ProxyError::TooLong(V2_FIXED + declared));
        }
        let header = match v2::Header::try_from(input) {
            Ok(h) => h,
            Err(e) => return Decision::from_v2_error(e),
        };
        let len = header.len();
        match header.protocol {
            v2::Protocol::Stream | v2::Protocol::Unspecified => {}
            v2::Protocol::Datagram => return Decision::Refused(ProxyError::BadProtocol(0x2)),
        }
        for tlv in header.tlvs() {
            let tlv = match tlv {
                Ok(t) => t,
                Err(_) => return Decision::Refused(ProxyError::BadTlv),
            };
            if tlv.kind == TLV_CRC32C && !crc_matches(header.as_bytes(), &tlv.value) {
                return Decision::Refused(ProxyError::BadChecksum);
            }
        }
        let client = match (header.command, header.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port))).zip(Some(
                    SocketAddr::from((a.destination_address, a.destination_port)),
                ))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port))).zip(Some(
                    SocketAddr::from((a.destination_address, a.destination_port)),
                ))
            }
            // LOCAL (health checks), UNSPEC and UNIX: the socket's own addresses.
            _ => None,
        };
        let address = match client {
            Some((client, server)) => ClientAddress {
                client: canonical_socket(client),
                server: canonical_socket(server),
                source: AddressSource::Proxy,
            },
            None => ClientAddress {
                client: self.peer,
                server: self.local,
                source: AddressSource::ProxyLocal,
            },
        };
        Decision::Done {
            address,
            consumed: len,
        }
    }

    fn decode_v1(&self, input: &[u8]) -> Decision {
        let Some(end) = memchr::memmem::find(input, b"\r\n") else {
            return if input.len() >= V1_MAX {
                Decision::Refused(ProxyError::BadV1)
            } else {
                Decision::NeedMore
            };
        };
        let line = &input[..end + 2];
        if line.len() > V1_MAX {
            return Decision::Refused(ProxyError::BadV1);
        }
        let header = match ppp::v1::Header::try_from(line) {
            Ok(h) => h,
            Err(_) => return Decision::Refused(ProxyError::BadV1),
        };
        let address = match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => ClientAddress {
                client: SocketAddr::from((a.source_address, a.source_port)),
                server: SocketAddr::from((a.destination_address, a.destination_port)),
                source: AddressSource::Proxy,
            },
            ppp::v1::Addresses::Tcp6(a) => ClientAddress {
                client: SocketAddr::from((a.source_address, a.source_port)),
                server: SocketAddr::from((a.destination_address, a.destination_port)),
                source: AddressSource::Proxy,
            },
            ppp::v1::Addresses::Unknown => ClientAddress {
                client: self.peer,
                server: self.local,
                source: AddressSource::ProxyLocal,
            },
        };
        Decision::Done {
            address,
            consumed: line.len(),
        }
    }
}

/// An IPv4-mapped IPv6 socket address as plain IPv4 (as Postfix does).
fn canonical_socket(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(a.ip()), a.port())
}

enum Decision {
    NeedMore,
    Done {
        address: ClientAddress,
        consumed: usize,
    },
    Refused(ProxyError),
}

impl Decision {
    fn from_v2_error(e: v2::ParseError) -> Self {
        use v2::ParseError as P;
        match e {
            P::Incomplete(_) | P::Partial(..) => Decision::NeedMore,
            P::Prefix => Decision::Refused(ProxyError::BadSignature),
            P::Version(v) => Decision::Refused(ProxyError::BadVersion(v >> 4)),
            P::Command(c) => Decision::Refused(ProxyError::BadCommand(c)),
            P::AddressFamily(a) => Decision::Refused(ProxyError::BadFamily(a >> 4)),
            P::Protocol(p) => Decision::Refused(ProxyError::BadProtocol(p)),
            P::InvalidAddresses(length, needed) => {
                Decision::Refused(ProxyError::TooShort { length, needed })
            }
            P::InvalidTLV(..) | P::Leftovers(_) => Decision::Refused(ProxyError::BadTlv),
        }
    }
}

/// Whether the CRC32C TLV `value` matches `header` (the whole header, with
/// the TLV's value taken as zero while computing, per the spec).
fn crc_matches(header: &[u8], value: &[u8]) -> bool {
    let Ok(expected) = <[u8; 4]>::try_from(value) else {
        return false;
    };
    // Find the CRC TLV's value inside the header to zero it.
    let mut copy = header.to_vec();
    let Some(pos) = find_crc_value(&copy) else {
        return false;
    };
    copy[pos..pos + 4].fill(0);
    crc32c(&copy) == u32::from_be_bytes(expected)
}

fn find_crc_value(header: &[u8]) -> Option<usize> {
    let family = header.get(13)? & 0xF0;
    let addr_len = match family {
        0x10 => 12,
        0x20 => 36,
        0x30 => 216,
        _ => 0,
    };
    let mut at = V2_FIXED + addr_len;
    while at + 3 <= header.len() {
        let kind = header[at];
        let len = usize::from(u16::from_be_bytes([header[at + 1], header[at + 2]]));
        if kind == TLV_CRC32C && len == 4 && at + 3 + 4 <= header.len() {
            return Some(at + 3);
        }
        at += 3 + len;
    }
    None
}

/// Builds a v2 header (for tests, benchmarks and the conformance runner).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, with_crc: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(V2_SIGNATURE);
    out.push(0x21);
    let mut body = Vec::with_capacity(48);
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
                SocketAddr::V6(v6) => *v6.ip(),
            };
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    if with_crc {
        body.extend_from_slice(&[TLV_CRC32C, 0, 4, 0, 0, 0, 0]);
    }
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    if with_crc {
        let crc = crc32c(&out);
        let n = out.len();
        out[n - 4..].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Builds a v2 `LOCAL` header (what HAProxy's health checks send).
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn gate(cfg: ProxyConfig) -> ProxyGate {
        ProxyGate::new(
            cfg,
            addr("10.0.20.5:40000"),
            addr("10.0.20.1:2525"),
            Instant::now(),
        )
    }

    fn trusted() -> ProxyConfig {
        ProxyConfig::required(Networks::parse(["10.0.20.0/24"]).unwrap())
    }

    #[test]
    fn v2_split_byte_by_byte() {
        let mut g = gate(trusted());
        assert_eq!(g.on_connect(), ProxyStep::NeedMore);
        let h = encode_v2(addr("203.0.113.7:5555"), addr("10.0.20.1:25"), true);
        let (last, head) = h.split_last().unwrap();
        for b in head {
            assert_eq!(g.handle_input(&[*b]), ProxyStep::NeedMore);
        }
        assert_eq!(g.buffered_len(), head.len());
        match g.handle_input(&[*last, b'E', b'H']) {
            ProxyStep::Done { address, rest } => {
                assert_eq!(address.client, addr("203.0.113.7:5555"));
                assert_eq!(address.source, AddressSource::Proxy);
                assert_eq!(rest, b"EH");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crc_mismatch_refused() {
        let mut g = gate(trusted());
        let mut h = encode_v2(addr("203.0.113.7:5555"), addr("10.0.20.1:25"), true);
        let n = h.len();
        h[n - 1] ^= 1;
        assert_eq!(
            g.handle_input(&h),
            ProxyStep::Refused(ProxyError::BadChecksum)
        );
    }

    #[test]
    fn untrusted_refused_at_connect() {
        let mut g = ProxyGate::new(
            trusted(),
            addr("192.0.2.1:1"),
            addr("10.0.20.1:2525"),
            Instant::now(),
        );
        assert!(matches!(
            g.on_connect(),
            ProxyStep::Refused(ProxyError::UntrustedPeer(_))
        ));
    }

    #[test]
    fn forbidden_sniffs() {
        let mut g = gate(ProxyConfig::forbidden());
        assert_eq!(g.handle_input(b"\r\n\r\n"), ProxyStep::NeedMore);
        assert_eq!(
            g.handle_input(b"\0\r\nQUIT\n"),
            ProxyStep::Refused(ProxyError::Forbidden)
        );
        let mut g = gate(ProxyConfig::forbidden());
        assert!(matches!(
            g.handle_input(b"EHLO x\r\n"),
            ProxyStep::Done { .. }
        ));
    }
}
