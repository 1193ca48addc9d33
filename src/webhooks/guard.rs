//! The private-address guard: webhooks never reach loopback, private, link-local (cloud
//! metadata lives at 169.254.169.254), shared, multicast or unspecified addresses unless an
//! explicit allowlist (`webhooks.allow`, hosts or CIDRs) permits them. An IPv6 address that
//! carries an IPv4 one (mapped, translated, NAT64, 6to4) is judged by the IPv4 address too:
//! where a translator or tunnel exists, that is the host it reaches.
//!
//! It runs twice: on the URL at registration (scheme, credentials, literal addresses) and on
//! every address the host resolves to at send time (a DNS resolver for the HTTP client that
//! drops forbidden addresses), so a name that later resolves somewhere private is refused
//! too.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Hosts and networks exempt from the guard.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl Allowlist {
    /// Each entry is a CIDR (`10.0.0.0/8`), an address (`127.0.0.1`) or a host name.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut list = Allowlist::default();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(net) = e.parse::<IpNet>() {
                list.nets.push(net);
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
            } else if e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                list.hosts.push(e.to_ascii_lowercase());
            } else {
                return Err(format!("webhooks.allow entry `{e}` is neither a host, an address nor a CIDR"));
            }
        }
        Ok(list)
    }

    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.hosts.contains(&host) || host.parse::<IpAddr>().is_ok_and(|ip| self.allows_ip(ip))
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether a resolved address may be connected to.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allows_ip(ip) || !is_forbidden(ip)
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 host itself (the dual stack connects to it), so
/// the allowlist judges them as that address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Addresses that are not the public internet.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated): a way into 6to4
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

/// The IPv4 address an IPv6 address carries where packets to it end up at that IPv4 host
/// (through the dual stack, a translator or a tunnel): IPv4-mapped `::ffff:0:0/96`,
/// IPv4-translated `::ffff:0:0:0/96` (SIIT), IPv4-compatible `::/96` (deprecated), the NAT64
/// well-known prefix `64:ff9b::/96` and 6to4 `2002::/16` (the IPv4 address in bits 16-47).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed in places)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: carries an obfuscated IPv4 address
        || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x10) // ORCHID 2001:10::/28
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x20) // ORCHIDv2 2001:20::/28
        // Local-use NAT64 64:ff9b:1::/48: where the operator puts the IPv4 address in it is
        // theirs to choose, and it reaches their own network: refused whole.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || embedded_v4(ip).is_some_and(forbidden_v4)
}

/// Checks a webhook URL at registration; the error is the 422 message.
pub fn check_url(raw: &str, https_only: bool, allow: &Allowlist) -> Result<url::Url, String> {
    if raw.len() > 2048 {
        return Err("The url field must not be greater than 2048 characters.".into());
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| "The url field must be a valid URL.".to_string())?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("The url field must be a valid URL.")?.to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err("The url field must not contain credentials.".into());
    }
    let allowed = allow.allows_host(&host);
    match url.scheme() {
        "https" => {}
        "http" if allowed || !https_only => {}
        "http" => return Err("The url field must use https.".into()),
        _ => return Err("The url field must be an http(s) URL.".into()),
    }
    if !allowed {
        // A trailing dot names the same host (`localhost.`).
        let bare = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
        let local_name = bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost");
        if local_name || bare.parse::<IpAddr>().is_ok_and(is_forbidden) {
            return Err("The url field must not point to a private, loopback or link-local address.".into());
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1",
            "255.255.255.255", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
        ] {
            assert!(is_forbidden(ip(bad)), "{bad}");
        }
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_forbidden(ip(good)), "{good}");
        }
    }

    #[test]
    fn ipv6_addresses_carrying_a_private_ipv4_one_are_forbidden() {
        // Each form with a private IPv4 address inside, then the same form with a public one.
        let forms = [
            ("::ffff:127.0.0.1", "::ffff:8.8.8.8"),                 // IPv4-mapped
            ("::ffff:0:127.0.0.1", "::ffff:0:8.8.8.8"),             // IPv4-translated (SIIT)
            ("::ffff:0:10.0.0.1", "::ffff:0:1.1.1.1"),
            ("::127.0.0.1", "::8.8.8.8"),                           // IPv4-compatible
            ("64:ff9b::127.0.0.1", "64:ff9b::8.8.8.8"),             // NAT64 well-known prefix
            ("64:ff9b::169.254.169.254", "64:ff9b::1.1.1.1"),
            ("64:ff9b::192.168.0.1", "64:ff9b::9.9.9.9"),
            ("2002:7f00:1::", "2002:808:808::"),                    // 6to4: 127.0.0.1, 8.8.8.8
            ("2002:a00:1::1", "2002:101:101::1"),                   // 10.0.0.1, 1.1.1.1
            ("2002:a9fe:a9fe::", "2002:909:909::"),                 // 169.254.169.254
        ];
        for (bad, good) in forms {
            assert!(is_forbidden(ip(bad)), "{bad}");
            assert!(!is_forbidden(ip(good)), "{good}");
        }
        for bad in [
            "64:ff9b:1::a00:1",      // local-use NAT64, refused whole
            "64:ff9b:1:ffff::808:808",
            "fec0::1",               // site-local
            "feff::1",
            "fc00::1",               // unique local
            "fdff:ffff::1",
            "fe80::1",               // link-local
            "febf::1",
            "ff02::1",               // multicast
            "ff0e::1",
            "::",                    // unspecified
            "::1",                   // loopback
            "2001:db8::1",           // documentation
            "3fff::1",
            "100::1",                // discard-only
            "2001::1",               // Teredo
            "2001:2::1",             // benchmarking
            "2001:10::1",            // ORCHID
            "2001:20::1",            // ORCHIDv2
        ] {
            assert!(is_forbidden(ip(bad)), "{bad}");
        }
        for good in ["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888", "64:ff9b:2::1", "3fff:1000::1"] {
            assert!(!is_forbidden(ip(good)), "{good}");
        }
        // Refused at registration and at send time alike.
        let none = Allowlist::default();
        for url in ["https://[::ffff:0:127.0.0.1]/", "https://[64:ff9b::127.0.0.1]/", "https://[2002:7f00:1::]/", "https://[fec0::1]/", "https://[64:ff9b:1::a00:1]/"] {
            assert!(check_url(url, true, &none).unwrap_err().contains("private"), "{url}");
        }
        assert!(check_url("https://[64:ff9b::8.8.8.8]/", true, &none).is_ok());
        for bad in ["::ffff:0:127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::", "fec0::1"] {
            assert!(!none.permits(ip(bad)), "{bad}");
        }
        // The allowlist exempts a mapped address as the IPv4 host, not a translated one.
        let local = Allowlist::parse(&["127.0.0.1".into()]).unwrap();
        assert!(local.permits(ip("::ffff:127.0.0.1")));
        assert!(!local.permits(ip("64:ff9b::127.0.0.1")) && !local.permits(ip("2002:7f00:1::")));
    }

    #[test]
    fn the_allowlist_exempts_hosts_and_networks() {
        let allow = Allowlist::parse(&["127.0.0.1".into(), "10.0.0.0/8".into(), "hooks.internal".into()]).unwrap();
        assert!(allow.permits(ip("127.0.0.1")) && allow.permits(ip("10.9.9.9")) && allow.permits(ip("::ffff:127.0.0.1")));
        assert!(!allow.permits(ip("192.168.0.1")));
        assert!(allow.allows_host("HOOKS.internal") && allow.allows_host("127.0.0.1") && !allow.allows_host("other"));
        assert!(Allowlist::parse(&["not a host!".into()]).is_err());
    }

    #[test]
    fn urls_are_checked_at_registration() {
        let none = Allowlist::default();
        assert!(check_url("https://hooks.example.com/x", true, &none).is_ok());
        assert!(check_url("http://hooks.example.com/x", true, &none).unwrap_err().contains("https"));
        assert!(check_url("http://hooks.example.com/x", false, &none).is_ok());
        assert!(check_url("ftp://hooks.example.com/x", false, &none).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", true, &none).unwrap_err().contains("credentials"));
        for private in ["https://127.0.0.1/x", "https://localhost/x", "https://localhost./x", "https://api.localhost/", "https://169.254.169.254/latest", "https://[::1]/", "https://10.0.0.1/", "https://[::ffff:192.168.0.1]/"] {
            assert!(check_url(private, true, &none).unwrap_err().contains("private"), "{private}");
        }
        assert!(check_url("not a url", true, &none).is_err());
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(2050)), true, &none).unwrap_err().contains("2048"));
        let local = Allowlist::parse(&["127.0.0.1".into()]).unwrap();
        assert!(check_url("http://127.0.0.1:9000/hook", true, &local).is_ok());
    }
}
