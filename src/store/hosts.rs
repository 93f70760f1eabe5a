//! libpq's multi-host URLs, which sqlx does not read (its URL parser takes one host and ignores
//! `target_session_attrs` with a warning):
//! `postgres://user@10.0.0.1:5432,10.0.0.2:5432/ledger?target_session_attrs=read-write`.
//!
//! A URL is split into one single-host URL per host, in the order given, each keeping the user,
//! password, database and every other parameter, so sqlx still parses each the way it always did.
//! `target_session_attrs` says which server may be used: `any` (the first that answers),
//! `read-write` (`transaction_read_only` off) or `primary` (not in recovery). The modes that
//! ask for a standby are refused: the service writes.
//!
//! Pure text: connecting and choosing among the hosts is `failover.rs`.

use std::fmt;

/// Which servers a session may use (libpq's `target_session_attrs`, the modes a writer can use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    Primary,
}

impl SessionAttrs {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::Primary => "primary",
        }
    }
}

/// One server of the list: where it is (for messages) and the URL that reaches it alone.
#[derive(Clone, PartialEq, Eq)]
pub struct Host {
    /// `host:port` as written (the port empty when defaulted), never the credentials.
    pub address: String,
    /// The single-host URL; it may hold a password, so it is never shown (see `Debug`).
    pub url: String,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The servers a URL names, in order, and which of them a session may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList {
    pub hosts: Vec<Host>,
    pub attrs: SessionAttrs,
}

impl HostList {
    /// `host:port,host:port`, for messages.
    pub fn addresses(&self) -> String {
        self.hosts
            .iter()
            .map(|host| host.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    #[error("the database URL's host list has an empty entry")]
    EmptyHost,
    #[error("the database URL's host {0} has a port that is not a number from 1 to 65535")]
    BadPort(String),
    #[error("the database URL's host list has an unclosed `[` (an IPv6 address)")]
    UnclosedBracket,
    #[error(
        "target_session_attrs={0} is not supported: the service writes, so it takes `read-write`, \
         `primary` or `any`"
    )]
    UnsupportedAttrs(String),
    #[error(
        "the database URL gives several values in its `{0}` parameter: give the hosts in the URL \
         itself (postgres://user@host1:port1,host2:port2/db)"
    )]
    ListInParameter(&'static str),
    #[error("the database URL has no host")]
    NoHost,
}

const ATTRS: &str = "target_session_attrs";

/// The URL's hosts and session attributes; `Ok(None)` when it names a single host and no
/// `target_session_attrs` (then it is used exactly as given, as it always was).
pub fn parse(url: &str) -> Result<Option<HostList>, HostsError> {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return Ok(None);
    };
    let (scheme, rest) = url.split_at(scheme_end);
    // The authority ends where the URL crate ends it: at the path, query or fragment.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((userinfo, hostlist)) => (Some(userinfo), hostlist),
        None => (None, authority),
    };
    let (path, query, fragment) = split_tail(tail);
    let mut attrs = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            ATTRS => attrs = Some(session_attrs(value)?),
            "host" | "hostaddr" if value.contains(',') => {
                return Err(HostsError::ListInParameter("host"))
            }
            "port" if value.contains(',') => return Err(HostsError::ListInParameter("port")),
            _ => kept.push(pair),
        }
    }
    if !hostlist.contains(',') && attrs.is_none() {
        return Ok(None);
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let userinfo = userinfo.map(|info| format!("{info}@")).unwrap_or_default();
    let hosts = split_hosts(hostlist)?
        .into_iter()
        .map(|address| Host {
            url: format!("{scheme}{userinfo}{address}{path}{query}{fragment}"),
            address: address.to_owned(),
        })
        .collect();
    Ok(Some(HostList {
        hosts,
        attrs: attrs.unwrap_or(SessionAttrs::Any),
    }))
}

/// (`/path` or "", the query without its `?`, `#fragment` or "").
fn split_tail(tail: &str) -> (&str, &str, &str) {
    let (before_fragment, fragment) = match tail.find('#') {
        Some(at) => tail.split_at(at),
        None => (tail, ""),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => (path, query, fragment),
        None => (before_fragment, "", fragment),
    }
}

fn session_attrs(value: &str) -> Result<SessionAttrs, HostsError> {
    match value {
        "any" => Ok(SessionAttrs::Any),
        "read-write" => Ok(SessionAttrs::ReadWrite),
        "primary" => Ok(SessionAttrs::Primary),
        other => Err(HostsError::UnsupportedAttrs(other.to_owned())),
    }
}

/// `a:1,[::1]:2,b` → ["a:1", "[::1]:2", "b"], each checked (a host, and a port if any).
fn split_hosts(hostlist: &str) -> Result<Vec<&str>, HostsError> {
    if hostlist.is_empty() {
        return Err(HostsError::NoHost);
    }
    hostlist.split(',').map(checked_host).collect()
}

fn checked_host(entry: &str) -> Result<&str, HostsError> {
    let port = if let Some(bracketed) = entry.strip_prefix('[') {
        let (_, after) = bracketed
            .split_once(']')
            .ok_or(HostsError::UnclosedBracket)?;
        after.strip_prefix(':')
    } else {
        entry.split_once(':').map(|(_, port)| port)
    };
    let host_len = entry.len() - port.map_or(0, |port| port.len() + 1);
    if host_len == 0 {
        return Err(HostsError::EmptyHost);
    }
    match port {
        Some(port) if !matches!(port.parse::<u16>(), Ok(1..)) => {
            Err(HostsError::BadPort(entry.to_owned()))
        }
        _ => Ok(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &HostList) -> Vec<&str> {
        list.hosts.iter().map(|host| host.url.as_str()).collect()
    }

    #[test]
    fn a_single_host_without_attrs_is_left_as_it_is() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/ledger",
            "postgres://u:p%40ss@db.example/ledger?sslmode=require",
            "postgresql://localhost",
            "postgres://%2Fvar%2Frun%2Fpostgresql/ledger",
        ] {
            assert_eq!(parse(url), Ok(None), "{url}");
        }
    }

    #[test]
    fn each_host_gets_the_whole_url_but_the_attrs() {
        let list = parse(
            "postgres://u:secret@127.0.0.1:5501,127.0.0.1:5502/ledger?sslmode=disable&target_session_attrs=read-write&application_name=lh",
        )
        .expect("valid")
        .expect("a list");
        assert_eq!(list.attrs, SessionAttrs::ReadWrite);
        assert_eq!(
            urls(&list),
            [
                "postgres://u:secret@127.0.0.1:5501/ledger?sslmode=disable&application_name=lh",
                "postgres://u:secret@127.0.0.1:5502/ledger?sslmode=disable&application_name=lh",
            ]
        );
        assert_eq!(list.addresses(), "127.0.0.1:5501,127.0.0.1:5502");
    }

    #[test]
    fn hosts_keep_their_order_and_may_omit_ports_or_be_ipv6() {
        let list = parse("postgresql://db1,[::1]:6000,db3:7000")
            .expect("valid")
            .expect("a list");
        assert_eq!(list.attrs, SessionAttrs::Any);
        assert_eq!(
            urls(&list),
            [
                "postgresql://db1",
                "postgresql://[::1]:6000",
                "postgresql://db3:7000"
            ]
        );
    }

    #[test]
    fn one_host_with_attrs_is_a_list_of_one() {
        let list = parse("postgres://h:1/d?target_session_attrs=primary")
            .expect("valid")
            .expect("a list");
        assert_eq!(list.attrs, SessionAttrs::Primary);
        assert_eq!(urls(&list), ["postgres://h:1/d"]);
    }

    #[test]
    fn every_host_url_is_one_sqlx_reads() {
        use std::str::FromStr;
        let list = parse("postgres://u:pw@a:5501,b:5502/ledger?target_session_attrs=any")
            .expect("valid")
            .expect("a list");
        let ports: Vec<(String, u16)> = list
            .hosts
            .iter()
            .map(|host| {
                let options =
                    sqlx::postgres::PgConnectOptions::from_str(&host.url).expect("sqlx reads it");
                (options.get_host().to_owned(), options.get_port())
            })
            .collect();
        assert_eq!(ports, [("a".into(), 5501), ("b".into(), 5502)]);
    }

    #[test]
    fn sqlx_itself_does_not_read_a_host_list() {
        use std::str::FromStr;
        assert!(
            sqlx::postgres::PgConnectOptions::from_str("postgres://u@a:5501,b:5502/l").is_err()
        );
    }

    #[test]
    fn malformed_lists_and_standby_modes_are_refused() {
        for (url, error) in [
            ("postgres://a:1,,b:2/d", HostsError::EmptyHost),
            ("postgres://a:1,:2/d", HostsError::EmptyHost),
            (
                "postgres://a:1,b:x/d",
                HostsError::BadPort("b:x".to_owned()),
            ),
            (
                "postgres://a:1,b:0/d",
                HostsError::BadPort("b:0".to_owned()),
            ),
            ("postgres://a:1,b:/d", HostsError::BadPort("b:".to_owned())),
            ("postgres://a,[::1/d", HostsError::UnclosedBracket),
            (
                "postgres://a/d?target_session_attrs=standby",
                HostsError::UnsupportedAttrs("standby".to_owned()),
            ),
            (
                "postgres://a/d?target_session_attrs=read-only",
                HostsError::UnsupportedAttrs("read-only".to_owned()),
            ),
            (
                "postgres://u@/d?host=a,b",
                HostsError::ListInParameter("host"),
            ),
            (
                "postgres://a/d?port=1,2",
                HostsError::ListInParameter("port"),
            ),
            (
                "postgres://u@/d?target_session_attrs=any",
                HostsError::NoHost,
            ),
        ] {
            assert_eq!(parse(url), Err(error), "{url}");
        }
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let list = parse("postgres://u:hunter2@a,b/d")
            .expect("valid")
            .expect("a list");
        assert!(!format!("{list:?}").contains("hunter2"));
    }
}
