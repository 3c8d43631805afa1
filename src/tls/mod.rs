//! HTTPS served by reel itself (rustls, through actix-web's `rustls-0_23` feature), and the
//! certificate pins it publishes (RFC 7469 SPKI SHA-256, see [`pins`]).
//!
//! - `--tls-cert FILE --tls-key FILE`: reel serves HTTPS on `--listen`. The certificate is
//!   chosen per handshake by [`Tls`] (a rustls `ResolvesServerCert`), so SIGHUP swaps in the
//!   files' new contents for new connections while open ones go on with the key they
//!   negotiated; a reload that fails keeps the previous certificate and says why in the log.
//! - `--tls-pin-cert FILE`: TLS ends at nginx; reel only publishes that certificate's pin (also
//!   re-read on SIGHUP).
//! - `--tls-backup-pin PIN` (repeatable): pins of keys kept in reserve, published alongside, so
//!   apps that pinned them keep working across a key change (RFC 7469 §4.3).

pub mod pins;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tracing::{info, warn};

pub use pins::{PinError, file_pins, parse_pin, spki_pin};

/// The TLS flags (`reel serve --help` shows these docs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Re-read on SIGHUP.
    #[arg(long, env = "REEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert. Re-read on SIGHUP.
    #[arg(long, env = "REEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// When TLS ends in front of reel (nginx): the certificate whose pin
    /// /api/v1/tls/pins publishes. Re-read on SIGHUP.
    #[arg(long, env = "REEL_TLS_PIN_CERT", conflicts_with = "tls_cert")]
    pub tls_pin_cert: Option<PathBuf>,

    /// A backup pin (base64 SHA-256 of a spare key's SPKI) published with the current one.
    /// Repeatable; comma separated in REEL_TLS_BACKUP_PINS.
    #[arg(long = "tls-backup-pin", env = "REEL_TLS_BACKUP_PINS", value_delimiter = ',', value_parser = parse_pin)]
    pub tls_backup_pins: Vec<String>,
}

/// `reel pin CERT.pem`.
#[derive(Debug, Clone, clap::Args)]
pub struct PinArgs {
    /// A PEM file of one or more certificates; one pin is printed per certificate, leaf first.
    pub cert: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("--tls-cert and --tls-key go together")]
    Pair,
    #[error(
        "--tls-pin-cert is for TLS ended in front of reel; with --tls-cert the pin is that certificate's"
    )]
    Both,
}

/// Why the certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the key {key} does not fit the certificate {cert}: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

impl TlsArgs {
    pub fn validate(&self) -> Result<(), TlsConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(TlsConfigError::Pair);
        }
        if self.tls_cert.is_some() && self.tls_pin_cert.is_some() {
            return Err(TlsConfigError::Both);
        }
        Ok(())
    }
}

/// What was loaded from the files.
#[derive(Debug, Default)]
struct Loaded {
    /// The pin of the leaf in use (served or `--tls-pin-cert`).
    pin: Option<String>,
    /// The key and chain served (`--tls-cert` only).
    key: Option<Arc<CertifiedKey>>,
}

/// The certificate in use and its pin; reloadable. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Tls {
    args: TlsArgs,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Arc<Loaded>>,
}

/// The pins of `/api/v1/tls/pins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinSet {
    pub current: Option<String>,
    pub backup: Vec<String>,
}

impl Tls {
    /// Loads the configured files (nothing configured is fine: no pins, plain HTTP).
    pub fn load(args: &TlsArgs) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load(args, &provider)?;
        Ok(Self {
            args: args.clone(),
            provider,
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Whether reel itself serves HTTPS.
    pub fn serves(&self) -> bool {
        self.args.tls_cert.is_some()
    }

    /// Whether SIGHUP has anything to re-read.
    pub fn reloadable(&self) -> bool {
        self.args.tls_cert.is_some() || self.args.tls_pin_cert.is_some()
    }

    /// Re-reads the files; on error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.args, &self.provider)?;
        let pin = loaded.pin.clone();
        match self.loaded.write() {
            Ok(mut current) => *current = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        info!(
            pin = pin.as_deref().unwrap_or(""),
            "TLS certificate reloaded"
        );
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(loaded) => loaded.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn pins(&self) -> PinSet {
        PinSet {
            current: self.current().pin.clone(),
            backup: self.args.tls_backup_pins.clone(),
        }
    }

    /// The rustls server configuration that resolves every handshake through `tls` (TLS 1.2
    /// and 1.3, the ring provider, no client certificates). ALPN is set by actix-web.
    pub fn server_config(tls: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        Ok(
            rustls::ServerConfig::builder_with_provider(tls.provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(tls.clone()),
        )
    }

    /// Reloads on every SIGHUP until the process ends (only when there is something to re-read).
    pub fn spawn_reloader(tls: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        if !tls.reloadable() {
            return None;
        }
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                warn!(%error, "no SIGHUP handler: certificates are read at start only");
                return None;
            }
        };
        let tls = tls.clone();
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let reloading = tls.clone();
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        warn!(%error, "TLS reload failed; the previous certificate stays in use")
                    }
                    Err(error) => warn!(%error, "TLS reload failed"),
                }
            }
        }))
    }
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().key.clone()
    }
}

fn load(args: &TlsArgs, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let chain = pins::read_chain(cert)?;
        let pin = spki_pin(&chain[0]).map_err(|error| PinError::Parse {
            path: cert.display().to_string(),
            index: 1,
            reason: error.to_string(),
        })?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Key {
            path: key.display().to_string(),
            reason: error.to_string(),
        })?;
        let certified = CertifiedKey::from_der(chain, private, provider).map_err(|error| {
            TlsError::Mismatch {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                reason: error.to_string(),
            }
        })?;
        return Ok(Loaded {
            pin: Some(pin),
            key: Some(Arc::new(certified)),
        });
    }
    if let Some(cert) = &args.tls_pin_cert {
        let pin = file_pins(cert)?.into_iter().next();
        return Ok(Loaded { pin, key: None });
    }
    Ok(Loaded::default())
}

/// `reel pin CERT.pem`: one pin per certificate on stdout; errors in plain words, exit 1.
pub fn print_pins(args: &PinArgs) -> std::process::ExitCode {
    use std::io::Write;
    match file_pins(&args.cert) {
        Ok(pins) => {
            let mut out = std::io::stdout().lock();
            for pin in pins {
                if writeln!(out, "{pin}").is_err() {
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "reel pin: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
