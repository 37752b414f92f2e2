//! [`Cidr`], an IP network such as `10.0.0.0/8`: what [`EgressPolicy::allowed_networks`] lists,
//! and the prefix masks address classification is built on.
//!
//! [`EgressPolicy::allowed_networks`]: super::EgressPolicy::allowed_networks

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IP network such as `10.0.0.0/8` or `fd00::/8`.
///
/// Parsed from `addr/prefix` or a bare address (a single host: `/32` or `/128`). Host bits are
/// cleared, so `10.1.2.3/8` is `10.0.0.0/8`. Serialized as its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid address in network {0:?}")]
    Address(String),
    #[error("invalid prefix length in network {0:?}")]
    Prefix(String),
}

impl Cidr {
    /// The network of `addr` with a `prefix`-bit mask; fails if `prefix` is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let network = match addr {
            IpAddr::V4(v4) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
            _ => return Err(CidrError::Prefix(format!("{addr}/{prefix}"))),
        };
        Ok(Self { network, prefix })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) also
    /// matches as its IPv4 address, since connecting to it reaches that IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exact(ip) || self.contains_exact(ip.to_canonical())
    }

    fn contains_exact(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(input.to_string()))?;
        let prefix = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::Prefix(input.to_string()))?
            }
            Some(_) => return Err(CidrError::Prefix(input.to_string())),
        };
        Self::new(addr, prefix).map_err(|_| CidrError::Prefix(input.to_string()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Cidr> for String {
    fn from(value: Cidr) -> Self {
        value.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

pub(super) fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

pub(super) fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::testing::{cidr, ip};

    #[test]
    fn cidr_parses_and_matches() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert_eq!(net.to_string(), "10.0.0.0/8");

        let host = cidr("127.0.0.1");
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("127.0.0.1")));
        assert!(
            host.contains(ip("::ffff:127.0.0.1")),
            "mapped form reaches the same host"
        );
        assert!(!host.contains(ip("127.0.0.2")));

        assert_eq!(cidr("10.1.2.3/8"), net, "host bits are cleared");
        assert_eq!(cidr(" 192.168.0.0/16 ").to_string(), "192.168.0.0/16");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));

        let v6 = cidr("fd00::/8");
        assert!(v6.contains(ip("fd00:ec2::254")));
        assert!(!v6.contains(ip("fe80::1")));
        assert_eq!(v6.to_string(), "fd00::/8");
        assert_eq!(cidr("::1").prefix(), 128);
        assert!(cidr("::/0").contains(ip("2606:4700::1111")));
        assert!(cidr("::ffff:0:0/96").contains(ip("::ffff:10.0.0.1")));
        assert_eq!(cidr("2001:db8::1/32"), Cidr::new(ip("2001:db8::"), 32).unwrap());
    }

    #[test]
    fn cidr_rejects_garbage() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "10.0.0.0/0x8",
            "fe80::1%eth0",
            "10.0.0.0/0008",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_err());
    }

    #[test]
    fn cidr_serde_round_trip() {
        let nets: Vec<Cidr> = serde::Deserialize::deserialize(serde::de::value::SeqDeserializer::<
            _,
            serde::de::value::Error,
        >::new(
            ["127.0.0.1/32".to_string(), "fd00::/8".to_string()].into_iter(),
        ))
        .unwrap();
        assert_eq!(nets, vec![cidr("127.0.0.1/32"), cidr("fd00::/8")]);
        assert_eq!(String::from(nets[1]), "fd00::/8");
    }
}
