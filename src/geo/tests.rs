use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_str(name).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn geo(header: Option<&str>, trusted: &[&str]) -> Geo {
    Geo {
        header: header.map(|h| HeaderName::from_str(h).expect("name")),
        trusted: trusted.iter().map(|t| parse_net(t).expect("net")).collect(),
        db: None,
    }
}

#[test]
fn the_country_header_is_believed_only_from_a_trusted_proxy() {
    let geo = geo(Some("CF-IPCountry"), &["10.0.0.0/8"]);
    let sent = headers(&[("cf-ipcountry", "de")]);
    assert_eq!(geo.country(Some(ip("10.1.2.3")), &sent), "DE");
    assert_eq!(geo.country(Some(ip("203.0.113.9")), &sent), "XX");
    // IPv4 peers seen through an IPv6 socket are still recognised.
    assert_eq!(geo.country(Some(ip("::ffff:10.1.2.3")), &sent), "DE");
    for unknown in ["XX", "T1", "", "DEU", "1A"] {
        let sent = headers(&[("cf-ipcountry", unknown)]);
        assert_eq!(
            geo.country(Some(ip("10.0.0.1")), &sent),
            "XX",
            "{unknown:?}"
        );
    }
    assert_eq!(Geo::none().country(Some(ip("10.0.0.1")), &sent), "XX");
}

#[test]
fn forwarded_for_is_read_right_to_left_through_trusted_proxies_only() {
    let trusted = |a: IpAddr| parse_net("10.0.0.0/8").expect("net").contains(&a);
    let xff = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
    // A client's own entries (1.1.1.1) are left of what the trusted proxies appended.
    assert_eq!(
        client_address(ip("10.0.0.1"), &xff, trusted),
        ip("198.51.100.7")
    );
    // Not from a trusted proxy: the header is the client's own words.
    assert_eq!(
        client_address(ip("192.0.2.1"), &xff, trusted),
        ip("192.0.2.1")
    );
    // Several headers are one list; ports and brackets are read.
    let split = headers(&[
        ("x-forwarded-for", "[2001:db8::5]:443"),
        ("x-forwarded-for", "10.0.0.3:80"),
    ]);
    assert_eq!(
        client_address(ip("10.0.0.1"), &split, trusted),
        ip("2001:db8::5")
    );
    // An unreadable entry stops the walk at the last address believed.
    let garbage = headers(&[("x-forwarded-for", "unknown, 10.0.0.9")]);
    assert_eq!(
        client_address(ip("10.0.0.1"), &garbage, trusted),
        ip("10.0.0.9")
    );
    assert_eq!(
        client_address(ip("10.0.0.1"), &headers(&[]), trusted),
        ip("10.0.0.1")
    );
}

#[test]
fn networks_parse_as_cidrs_or_single_addresses() {
    assert!(
        parse_net("127.0.0.1")
            .expect("one")
            .contains(&ip("127.0.0.1"))
    );
    assert!(
        !parse_net("127.0.0.1")
            .expect("one")
            .contains(&ip("127.0.0.2"))
    );
    assert!(
        parse_net("10.9.9.9/8")
            .expect("cidr")
            .contains(&ip("10.1.1.1"))
    );
    assert!(
        parse_net("2001:db8::/32")
            .expect("v6")
            .contains(&ip("2001:db8::1"))
    );
    assert!(parse_net("ten").is_err());
}
