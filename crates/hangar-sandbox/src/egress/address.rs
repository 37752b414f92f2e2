//! Address classification: which IP addresses are public, and why the others are not. Every
//! address the proxy would connect to passes [`is_public`] unless the policy allows its network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cidr::{mask_v4, mask_v6};

/// Whether `ip` is a public unicast address a sandbox may reach.
///
/// Not public: loopback, private (RFC 1918, unique-local `fc00::/7` incl. AWS's `fd00:ec2::254`),
/// link-local (incl. the `169.254.169.254` metadata service), CGNAT `100.64/10`, unspecified,
/// multicast, broadcast, reserved, benchmarking and documentation ranges, Teredo, and anything
/// outside the IPv6 global unicast block `2000::/3`. IPv6 forms embedding an IPv4 address
/// (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// Why `ip` is not public (for example `"private"` or `"link-local"`), or `None` if it is.
/// Reads as "address … is {reason}".
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    // First match wins: broadcast is listed before the reserved block containing it.
    const RANGES: [([u8; 4], u8, &str); 16] = [
        ([0, 0, 0, 0], 8, "unspecified"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "in the CGNAT shared range"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "reserved"),
        ([192, 0, 2, 0], 24, "in a documentation range"),
        ([192, 88, 99, 0], 24, "reserved"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "in the benchmarking range"),
        ([198, 51, 100, 0], 24, "in a documentation range"),
        ([203, 0, 113, 0], 24, "in a documentation range"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    let bits = u32::from(ip);
    RANGES
        .iter()
        .find(|(net, prefix, _)| bits & mask_v4(*prefix) == u32::from_be_bytes(*net))
        .map(|(_, _, reason)| *reason)
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    const RANGES: [(u128, u8, &str); 10] = [
        (0x0064_ff9b_0001 << 80, 48, "in the local-use NAT64 range"),
        (0x0100 << 112, 64, "in the discard-only range"),
        (0x2001_0000 << 96, 32, "a Teredo address"),
        (0x2001_0db8 << 96, 32, "in a documentation range"),
        (0x2001 << 112, 23, "reserved"),
        (0x3fff << 112, 20, "in a documentation range"),
        (0xfc00 << 112, 7, "private"),
        (0xfe80 << 112, 10, "link-local"),
        (0xfec0 << 112, 10, "site-local"),
        (0xff00 << 112, 8, "multicast"),
    ];
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let bits = u128::from(ip);
    if let Some(embedded) = embedded_v4(bits) {
        return classify_v4(embedded);
    }
    if let Some((_, _, reason)) = RANGES
        .iter()
        .find(|(net, prefix, _)| bits & mask_v6(*prefix) == *net)
    {
        return Some(reason);
    }
    if bits & mask_v6(3) != 0x2000 << 112 {
        return Some("not a global unicast address");
    }
    None
}

/// The IPv4 address an IPv6 address stands for: mapped `::ffff:0:0/96`, compatible `::/96`,
/// NAT64 `64:ff9b::/96` and 6to4 `2002::/16`. (`::` and `::1` are handled before.)
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    let low32 = Ipv4Addr::from(bits as u32);
    let in_net = |net: u128, prefix: u8| bits & mask_v6(prefix) == net;
    if in_net(0xffff << 32, 96) || in_net(0, 96) || in_net(0x0064_ff9b << 96, 96) {
        return Some(low32);
    }
    if in_net(0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::testing::ip;

    #[test]
    fn is_public_table() {
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for text in public {
            assert!(is_public(ip(text)), "{text} should be public");
        }
        let private = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("100.64.0.1", "in the CGNAT shared range"),
            ("100.127.255.255", "in the CGNAT shared range"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "reserved"),
            ("192.0.2.1", "in a documentation range"),
            ("192.88.99.1", "reserved"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "in the benchmarking range"),
            ("198.19.255.255", "in the benchmarking range"),
            ("198.51.100.7", "in a documentation range"),
            ("203.0.113.7", "in a documentation range"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.1.1.1", "private"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::8.8.8.8", "in the local-use NAT64 range"),
            ("2002:a00:1::1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("2001::1", "a Teredo address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address"),
            ("2001:2::1", "reserved"),
            ("2001:db8::1", "in a documentation range"),
            ("3fff::1", "in a documentation range"),
            ("100::1", "in the discard-only range"),
            ("fc00::1", "private"),
            ("fd00:ec2::254", "private"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "not a global unicast address"),
            ("1::1", "not a global unicast address"),
        ];
        for (text, reason) in private {
            assert!(!is_public(ip(text)), "{text} should not be public");
            assert_eq!(non_public_reason(ip(text)), Some(reason), "{text}");
        }
    }
}
