//! Who is calling, and may they: the optional IP allowlist with explicitly trusted proxies.
//!
//! The client is the TCP peer, unless the peer is a trusted proxy: then X-Forwarded-For is read
//! from the right, skipping trusted proxies, and the first address that is not one is the client.
//! X-Forwarded-For from anyone else is ignored, since any caller can write it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// TradingView's webhook senders (its documentation): IPv4 only, so no IPv6 address ever matches.
pub const TRADINGVIEW_ADDRESSES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(52, 89, 214, 238),
    Ipv4Addr::new(34, 212, 75, 30),
    Ipv4Addr::new(54, 218, 53, 128),
    Ipv4Addr::new(52, 32, 178, 7),
];

/// The word that stands for `TRADINGVIEW_ADDRESSES` in `--allowed-ips`.
pub const TRADINGVIEW: &str = "tradingview";

/// Networks per list at most: lists are operator-written, and each request scans them.
pub const MAX_NETWORKS: usize = 256;
/// X-Forwarded-For hops examined at most; a longer chain is refused rather than walked.
pub const MAX_FORWARDED_HOPS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowlistError {
    #[error("{0:?} is not an IP address or CIDR network")]
    NotANetwork(String),
    #[error("at most {MAX_NETWORKS} networks per list")]
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowlist {
    allowed: Vec<IpNet>,
    trusted_proxies: TrustedProxies,
}

/// The proxies whose X-Forwarded-For is believed: who the client is, for the allowlist and for
/// counting failed authentications per address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn parse(items: &[String]) -> Result<Self, AllowlistError> {
        Ok(Self {
            networks: parse_networks(items, false)?,
        })
    }

    /// The caller's address, or `None` when a trusted proxy forwarded something unreadable.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[Option<&str>]) -> Option<IpAddr> {
        let mut client = peer.to_canonical();
        if !contains(&self.networks, client) {
            return Some(client);
        }
        let mut hops = Vec::new();
        for value in forwarded_for {
            hops.extend(value.as_ref()?.split(','));
            if hops.len() > MAX_FORWARDED_HOPS {
                return None;
            }
        }
        for hop in hops.iter().rev() {
            client = parse_hop(hop)?;
            if !contains(&self.networks, client) {
                return Some(client);
            }
        }
        // Every hop was a trusted proxy: the request started at the leftmost one.
        Some(client)
    }
}

impl IpAllowlist {
    /// `None` when nothing is listed as allowed: the allowlist is off and every address may call.
    /// Items are addresses, CIDR networks or `tradingview`; empty items are skipped.
    pub fn parse(
        allowed: &[String],
        trusted_proxies: &[String],
    ) -> Result<Option<Self>, AllowlistError> {
        let allowed = parse_networks(allowed, true)?;
        let trusted_proxies = TrustedProxies::parse(trusted_proxies)?;
        if allowed.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            allowed,
            trusted_proxies,
        }))
    }

    /// May the caller use the webhook? `forwarded_for` holds the X-Forwarded-For header values in
    /// the order received (`None` for a value that is not text).
    pub fn admits(&self, peer: IpAddr, forwarded_for: &[Option<&str>]) -> bool {
        self.client_ip(peer, forwarded_for)
            .is_some_and(|client| contains(&self.allowed, client))
    }

    /// The caller's address, or `None` when a trusted proxy forwarded something unreadable.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[Option<&str>]) -> Option<IpAddr> {
        self.trusted_proxies.client_ip(peer, forwarded_for)
    }
}

fn contains(networks: &[IpNet], address: IpAddr) -> bool {
    networks.iter().any(|network| network.contains(&address))
}

fn parse_networks(
    items: &[String],
    tradingview_allowed: bool,
) -> Result<Vec<IpNet>, AllowlistError> {
    let mut networks = Vec::new();
    for item in items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
    {
        if tradingview_allowed && item.eq_ignore_ascii_case(TRADINGVIEW) {
            networks.extend(TRADINGVIEW_ADDRESSES.map(|address| IpNet::from(IpAddr::V4(address))));
        } else if let Ok(network) = item.parse::<IpNet>() {
            networks.push(network.trunc());
        } else if let Ok(address) = item.parse::<IpAddr>() {
            networks.push(IpNet::from(address.to_canonical()));
        } else {
            return Err(AllowlistError::NotANetwork(item.to_owned()));
        }
        if networks.len() > MAX_NETWORKS {
            return Err(AllowlistError::TooMany);
        }
    }
    Ok(networks)
}

/// One X-Forwarded-For entry: an address, perhaps with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let address = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allowed: &[&str], trusted: &[&str]) -> IpAllowlist {
        let owned = |items: &[&str]| {
            items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>()
        };
        IpAllowlist::parse(&owned(allowed), &owned(trusted))
            .expect("valid lists")
            .expect("an allowlist")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_xff_says() {
        let allowlist = list(&["tradingview"], &[]);
        let spoofed = [Some("52.89.214.238")];
        assert!(!allowlist.admits(ip("198.51.100.1"), &spoofed));
        assert_eq!(
            allowlist.client_ip(ip("198.51.100.1"), &spoofed),
            Some(ip("198.51.100.1"))
        );
        assert!(allowlist.admits(ip("52.89.214.238"), &[]));
        assert!(allowlist.admits(ip("52.32.178.7"), &[Some("garbage")]));
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let allowlist = list(&["tradingview"], &["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        assert!(allowlist.admits(proxy, &[Some("52.89.214.238")]));
        assert!(allowlist.admits(proxy, &[Some("52.89.214.238, 10.0.0.7")]));
        // The client prepended a TradingView address; the proxy appended the real one.
        assert!(!allowlist.admits(proxy, &[Some("52.89.214.238, 198.51.100.1")]));
        assert_eq!(
            allowlist.client_ip(
                proxy,
                &[Some("52.89.214.238"), Some("198.51.100.1, 10.1.1.1")]
            ),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn a_trusted_proxy_with_no_forwarded_address_is_itself_the_client() {
        let allowlist = list(&["tradingview"], &["10.0.0.0/8"]);
        assert_eq!(
            allowlist.client_ip(ip("10.0.0.2"), &[]),
            Some(ip("10.0.0.2"))
        );
        assert!(!allowlist.admits(ip("10.0.0.2"), &[]));
    }

    #[test]
    fn unreadable_or_overlong_forwarding_is_refused() {
        let allowlist = list(&["0.0.0.0/0"], &["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        assert!(!allowlist.admits(proxy, &[Some("not-an-ip")]));
        assert!(!allowlist.admits(proxy, &[Some("52.89.214.238,,10.0.0.3")]));
        assert!(!allowlist.admits(proxy, &[None]));
        let long = vec!["10.0.0.9"; MAX_FORWARDED_HOPS + 1].join(",");
        assert!(!allowlist.admits(proxy, &[Some(&long)]));
        assert!(allowlist.admits(proxy, &[Some("203.0.113.5:4711")]));
    }

    #[test]
    fn ipv6_is_never_tradingview_but_mapped_ipv4_is_ipv4() {
        let allowlist = list(&["tradingview"], &["::1"]);
        assert!(!allowlist.admits(ip("2001:db8::1"), &[]));
        assert!(!allowlist.admits(ip("::1"), &[Some("[2001:db8::1]:443")]));
        assert!(allowlist.admits(ip("::ffff:52.89.214.238"), &[]));
        assert!(allowlist.admits(ip("::1"), &[Some("::ffff:34.212.75.30")]));
    }

    #[test]
    fn lists_parse_addresses_networks_and_the_tradingview_word() {
        let allowlist = list(&["TradingView", " 192.0.2.0/24 ", "2001:db8::/32", ""], &[]);
        assert!(allowlist.admits(ip("54.218.53.128"), &[]));
        assert!(allowlist.admits(ip("192.0.2.200"), &[]));
        assert!(allowlist.admits(ip("2001:db8:1::5"), &[]));
        assert!(!allowlist.admits(ip("192.0.3.1"), &[]));
        assert_eq!(IpAllowlist::parse(&[], &["10.0.0.1".into()]), Ok(None));
        assert_eq!(
            IpAllowlist::parse(&["10.0.0.300".into()], &[]),
            Err(AllowlistError::NotANetwork("10.0.0.300".into()))
        );
        assert_eq!(
            IpAllowlist::parse(&["10.0.0.1".into()], &["tradingview".into()]),
            Err(AllowlistError::NotANetwork("tradingview".into())),
            "TradingView's senders are never proxies"
        );
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|n| format!("10.0.{}.{}", n / 256, n % 256))
            .collect();
        assert_eq!(IpAllowlist::parse(&many, &[]), Err(AllowlistError::TooMany));
    }
}
