//! The front every server session (SMTP, IMAP) starts with, written once:
//! the PROXY gate (a header required, or sniffed for where it is
//! forbidden), the real client address it yields, and whether the connect
//! question is asked now or once the header has come. Implicit TLS on a
//! listener without PROXY drops the gate (every byte is the handshake's).
//!
//! A session passes its raw input through [`Front::input`] (and its EOF and
//! timeouts through [`Front::eof`] and [`Front::timeout`]) until the gate
//! is gone; what comes out is the protocol's.

use crate::proxy::{ClientAddress, ProxyConfig, ProxyError, ProxyGate, ProxyStep};
use crate::smtp::TlsMode;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

/// How a connection opens.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// The PROXY gate refused the peer before any byte: log, close.
    Refused(ProxyError),
    /// A PROXY header is required: wait for it (the connect question comes
    /// with [`Passed::Known`]).
    AwaitHeader,
    /// No header expected: ask the connect question for this address now.
    Ask(ClientAddress),
}

/// What became of input, EOF or a timeout at the front.
#[derive(Debug, PartialEq, Eq)]
pub enum Passed<'a> {
    /// The gate holds the bytes (a header is still arriving).
    Hold,
    /// The gate refused the connection: log, close.
    Refused(ProxyError),
    /// A required header has come: this is the real client; ask the connect
    /// question, and keep `rest` for after the answer.
    Known {
        /// The real client and server addresses.
        address: ClientAddress,
        /// Bytes that followed the header.
        rest: Vec<u8>,
    },
    /// Bytes for the protocol.
    Bytes(Cow<'a, [u8]>),
}

/// The front of one connection.
#[derive(Debug)]
pub struct Front {
    gate: Option<ProxyGate>,
    address: ClientAddress,
    awaiting: bool,
}

impl Front {
    /// The front of a connection from `peer` to `local` accepted at `now`
    /// on a listener with this PROXY policy and TLS mode, and how it opens.
    pub fn new(
        proxy: ProxyConfig,
        tls: TlsMode,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> (Self, Opening) {
        let required = proxy.is_required();
        let mut gate = ProxyGate::new(proxy, peer, local, now);
        let address = gate.socket_address();
        let mut front = Self {
            gate: None,
            address,
            awaiting: required,
        };
        if let ProxyStep::Refused(e) = gate.on_connect() {
            front.awaiting = false;
            return (front, Opening::Refused(e));
        }
        if required {
            front.gate = Some(gate);
            return (front, Opening::AwaitHeader);
        }
        // No header expected. The server speaks first in plain text, so
        // keep the gate to sniff for a header that must not come; under
        // implicit TLS a stray header fails the handshake anyway.
        if tls != TlsMode::Implicit {
            front.gate = Some(gate);
        }
        (front, Opening::Ask(address))
    }

    /// The real client and server addresses (the PROXY source once known).
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// Whether a required header is still awaited.
    pub fn awaiting_header(&self) -> bool {
        self.awaiting
    }

    /// Bytes the gate holds.
    pub fn buffered_len(&self) -> usize {
        self.gate.as_ref().map_or(0, ProxyGate::buffered_len)
    }

    /// The gate's deadline, while it has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gate.as_ref().and_then(ProxyGate::poll_timeout)
    }

    /// Passes input through the gate.
    pub fn input<'a>(&mut self, bytes: &'a [u8]) -> Passed<'a> {
        let Some(gate) = self.gate.as_mut() else {
            return Passed::Bytes(Cow::Borrowed(bytes));
        };
        match gate.handle_input(bytes) {
            ProxyStep::NeedMore => Passed::Hold,
            ProxyStep::Refused(e) => {
                self.gate = None;
                self.awaiting = false;
                Passed::Refused(e)
            }
            ProxyStep::Done { address, rest } => {
                self.gate = None;
                if std::mem::take(&mut self.awaiting) {
                    self.address = address;
                    Passed::Known { address, rest }
                } else {
                    Passed::Bytes(Cow::Owned(rest))
                }
            }
        }
    }

    /// The client closed its side: a required header never came (or came
    /// in part) is a PROXY refusal, not a lost connection.
    pub fn eof(&mut self) -> Option<ProxyError> {
        let gate = self.gate.as_mut()?;
        match gate.handle_eof() {
            ProxyStep::Refused(e) => {
                self.gate = None;
                self.awaiting = false;
                Some(e)
            }
            _ => None,
        }
    }

    /// The clock moved on: a required header is late (refused), or bytes
    /// held while sniffing were not a header after all (released).
    pub fn timeout(&mut self, now: Instant) -> Passed<'static> {
        let Some(gate) = self.gate.as_mut() else {
            return Passed::Hold;
        };
        match gate.handle_timeout(now) {
            ProxyStep::NeedMore => Passed::Hold,
            ProxyStep::Refused(e) => {
                self.gate = None;
                self.awaiting = false;
                Passed::Refused(e)
            }
            ProxyStep::Done { rest, .. } => {
                self.gate = None;
                Passed::Bytes(Cow::Owned(rest))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{encode_v2, AddressSource};
    use crate::Networks;

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn required() -> ProxyConfig {
        ProxyConfig::required(Networks::parse(["10.0.20.0/24"]).expect("nets"))
    }

    #[test]
    fn a_required_header_names_the_real_client_once() {
        let now = Instant::now();
        let (mut f, o) = Front::new(
            required(),
            TlsMode::StartTls,
            sock("10.0.20.5:4000"),
            sock("10.0.20.9:2525"),
            now,
        );
        assert_eq!(o, Opening::AwaitHeader);
        let mut bytes = encode_v2(sock("203.0.113.7:5555"), sock("10.0.20.1:25"), false);
        bytes.extend_from_slice(b"EHLO x\r\n");
        let (head, tail) = bytes.split_at(5);
        assert_eq!(f.input(head), Passed::Hold);
        match f.input(tail) {
            Passed::Known { address, rest } => {
                assert_eq!(address.client, sock("203.0.113.7:5555"));
                assert_eq!(address.source, AddressSource::Proxy);
                assert_eq!(rest, b"EHLO x\r\n");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.address().client, sock("203.0.113.7:5555"));
        assert_eq!(
            f.input(b"NOOP\r\n"),
            Passed::Bytes(Cow::Borrowed(b"NOOP\r\n"))
        );
    }

    #[test]
    fn eof_or_a_late_header_is_a_proxy_refusal() {
        let now = Instant::now();
        let (mut f, _) = Front::new(
            required(),
            TlsMode::Implicit,
            sock("10.0.20.5:4000"),
            sock("10.0.20.9:4465"),
            now,
        );
        assert_eq!(f.input(b"\r\n\r\n"), Passed::Hold);
        assert!(f.eof().is_some());
        let (mut g, _) = Front::new(
            required(),
            TlsMode::Implicit,
            sock("10.0.20.5:4000"),
            sock("10.0.20.9:4465"),
            now,
        );
        let due = g.poll_timeout().expect("deadline");
        assert!(matches!(g.timeout(due), Passed::Refused(_)));
    }

    #[test]
    fn an_untrusted_peer_is_refused_before_any_byte_and_plain_listeners_ask_at_once() {
        let now = Instant::now();
        let (_, o) = Front::new(
            required(),
            TlsMode::StartTls,
            sock("192.0.2.1:4000"),
            sock("10.0.20.9:2525"),
            now,
        );
        assert!(matches!(o, Opening::Refused(_)));
        let (mut f, o) = Front::new(
            ProxyConfig::forbidden(),
            TlsMode::StartTls,
            sock("192.0.2.1:4000"),
            sock("10.0.20.9:25"),
            now,
        );
        assert_eq!(o, Opening::Ask(f.address()));
        assert_eq!(
            f.input(b"EHLO x\r\n"),
            Passed::Bytes(Cow::Owned(b"EHLO x\r\n".to_vec()))
        );
    }
}
