//! The client's address behind proxies, from `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the list reads client
//! first, nearest proxy last; only the entries added by proxies reel trusts are believed. The
//! walk starts at the peer and goes right to left while the current address is a trusted
//! proxy; the first address that is not (or the last one readable) is the client. A client
//! that writes its own `X-Forwarded-For` only adds entries to the left of what the trusted
//! proxies appended, which the walk never reaches.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;

/// The address the request came from: `peer` itself unless `trusted(peer)` (see the module docs).
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted(client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        let Some(address) = parse_entry(entry) else {
            break;
        };
        client = address.to_canonical();
        if !trusted(client) {
            break;
        }
    }
    client
}

/// `203.0.113.7`, `2001:db8::1`, and the forms with a port (`203.0.113.7:4711`, `[2001:db8::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}
