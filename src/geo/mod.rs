//! The client's country, for analytics and properties: ISO 3166-1 alpha-2, [`UNKNOWN`] (`XX`)
//! when it cannot be told.
//!
//! In order:
//! 1. `--country-header` (e.g. Cloudflare's `CF-IPCountry`), believed only when the connection
//!    comes from one of `--trusted-proxies`: anyone else could write any country into it;
//! 2. `--geoip-db`, a MaxMind or DB-IP `.mmdb` file (country or city edition, read with the
//!    `maxminddb` crate), looked up for the client's address: the peer, or, when the peer is a
//!    trusted proxy, the right-most address of `X-Forwarded-For` that is not a trusted proxy
//!    (see [`client_address`]);
//! 3. otherwise `XX`.
//!
//! A value that is not two ASCII letters (Cloudflare's `T1` for Tor, an empty header) counts as
//! unknown at its step.

mod forwarded;

use std::future::{Ready, ready};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use ipnet::IpNet;

pub use forwarded::client_address;

/// The country of a client that cannot be told.
pub const UNKNOWN: &str = "XX";

/// Where the client's country comes from (`reel serve --help` shows these docs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GeoArgs {
    /// A request header holding the client's country (ISO 3166-1 alpha-2) set by a trusted
    /// edge, e.g. `CF-IPCountry`; read only on connections from --trusted-proxies.
    #[arg(long, env = "REEL_COUNTRY_HEADER", value_parser = parse_header_name)]
    pub country_header: Option<HeaderName>,

    /// Proxies (CIDRs or addresses, comma separated) whose X-Forwarded-For and country header
    /// are believed, e.g. `127.0.0.1/32,10.0.0.0/8`.
    #[arg(long, env = "REEL_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// A MaxMind or DB-IP `.mmdb` database (country or city); the client's address is looked
    /// up in it when no trusted country header says where it is.
    #[arg(long, env = "REEL_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
}

fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_str(text.trim()).map_err(|_| format!("{text:?} is not a header name"))
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`127.0.0.1`: that address only).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    IpNet::from_str(text)
        .map(|net| net.trunc())
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR block"))
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open the GeoIP database {path}: {reason}")]
    Open { path: String, reason: String },
}

/// Tells a request's country. Built once at start-up; shared by every HTTP worker.
pub struct Geo {
    header: Option<HeaderName>,
    trusted: Vec<IpNet>,
    db: Option<maxminddb::Reader<Vec<u8>>>,
}

impl Geo {
    /// Opens the GeoIP database, when one is configured (its whole file is read into memory:
    /// a country edition is a few MiB).
    pub fn open(args: &GeoArgs) -> Result<Self, GeoError> {
        let db =
            match &args.geoip_db {
                None => None,
                Some(path) => Some(maxminddb::Reader::open_readfile(path).map_err(|error| {
                    GeoError::Open {
                        path: path.display().to_string(),
                        reason: error.to_string(),
                    }
                })?),
            };
        if let Some(db) = &db {
            tracing::info!(
                database = %db.metadata.database_type,
                built = db.metadata.build_epoch,
                "GeoIP database opened"
            );
        }
        Ok(Self {
            header: args.country_header.clone(),
            trusted: args.trusted_proxies.clone(),
            db,
        })
    }

    /// Nothing configured: every client is `XX`.
    pub fn none() -> Self {
        Self {
            header: None,
            trusted: Vec::new(),
            db: None,
        }
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// The country of a request from `peer` with `headers` (see the module docs).
    pub fn country(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> String {
        let peer = peer.map(|ip| ip.to_canonical());
        let trusted_peer = peer.is_some_and(|ip| self.is_trusted(ip));
        if trusted_peer
            && let Some(name) = &self.header
            && let Some(code) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(iso_code)
        {
            return code;
        }
        peer.map(|peer| client_address(peer, headers, |ip| self.is_trusted(ip)))
            .and_then(|client| self.lookup(client))
            .unwrap_or_else(|| UNKNOWN.to_owned())
    }

    /// The country of `address` in the GeoIP database: its `country`, else its
    /// `registered_country` (anycast and satellite ranges often have only that).
    pub fn lookup(&self, address: IpAddr) -> Option<String> {
        let db = self.db.as_ref()?;
        let record: maxminddb::geoip2::Country<'_> = match db.lookup(address) {
            Ok(found) => found?,
            Err(error) => {
                tracing::debug!(%error, "GeoIP lookup failed");
                return None;
            }
        };
        record
            .country
            .and_then(|c| c.iso_code)
            .and_then(iso_code)
            .or_else(|| {
                record
                    .registered_country
                    .and_then(|c| c.iso_code)
                    .and_then(iso_code)
            })
    }
}

/// Two ASCII letters, upper-cased; `XX` and anything else is no answer.
fn iso_code(text: &str) -> Option<String> {
    let text = text.trim();
    let code = (text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())?;
    (code != UNKNOWN).then_some(code)
}

/// The country of the request being handled, as an extractor (never fails: `XX` at worst).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCountry(pub String);

impl ClientCountry {
    /// The country of `req` (`XX` when no [`Geo`] is installed).
    pub fn of(req: &HttpRequest) -> String {
        match req.app_data::<web::Data<Geo>>() {
            Some(geo) => geo.country(req.peer_addr().map(|a| a.ip()), req.headers()),
            None => UNKNOWN.to_owned(),
        }
    }
}

impl FromRequest for ClientCountry {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Self(Self::of(req))))
    }
}

#[cfg(test)]
mod tests;
