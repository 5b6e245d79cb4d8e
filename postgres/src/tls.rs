//! TLS through rustls (the `ring` provider), with libpq's `sslmode` meanings.
//!
//! | mode | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` | when the server offers it | not checked; with a root certificate, its chain is |
//! | `require` | always | not checked; with a root certificate, its chain is (as `verify-ca`) |
//! | `verify-ca` | always | chain to the root certificate |
//! | `verify-full` | always | chain, and the host name (or IP address) is in it |
//!
//! Even unchecked, the handshake's signatures are verified against the key of
//! the certificate the server sent. TLS does not apply to Unix-socket hosts:
//! PostgreSQL refuses it there, and a store whose hosts are all Unix sockets
//! connects without it whatever the mode, as libpq does.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use tokenstore_core::StoreError;
use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Whether and how a connection uses TLS: libpq's `sslmode`.
///
/// Set it in the URL (`?sslmode=verify-full&sslrootcert=/path/ca.pem`) or
/// with [`PostgresTokenStoreBuilder::tls_mode`](crate::PostgresTokenStoreBuilder::tls_mode)
/// and [`tls_root_cert`](crate::PostgresTokenStoreBuilder::tls_root_cert).
/// It parses from and prints as libpq's names.
///
/// TLS never applies to a Unix-socket host (PostgreSQL does not offer it
/// there): a store whose hosts are all Unix sockets connects without TLS in
/// every mode, as libpq does. In a host list mixing Unix sockets and TCP, the
/// Unix-socket hosts fail under `require` and the `verify-*` modes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, else plain (the default). The
    /// certificate is not checked unless a root certificate is given; then
    /// its chain is, and a bad one fails the connection (no plain fallback).
    #[default]
    Prefer,
    /// TLS or no connection. The certificate is not checked (the link is
    /// encrypted, but a man in the middle is not detected) unless a root
    /// certificate is given: then this is [`TlsMode::VerifyCa`], as in libpq.
    Require,
    /// TLS, and the server's certificate chains to the root certificate
    /// (which must be given). The host name is not checked.
    VerifyCa,
    /// As [`TlsMode::VerifyCa`], and the host name (or IP address) dialled is
    /// one the certificate names.
    VerifyFull,
}

impl TlsMode {
    /// libpq's name of the mode (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The mode a tokio-postgres config asks for.
    pub(crate) fn of(config: &Config) -> Self {
        match config.get_ssl_mode() {
            SslMode::Disable => Self::Disable,
            SslMode::Prefer => Self::Prefer,
            // SslMode is non-exhaustive: anything newer is at least `require`.
            _ => Self::Require,
        }
    }

    /// The mode tokio-postgres runs the negotiation in.
    fn negotiation(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = StoreError;

    /// libpq's names; anything else (including libpq's `allow`, which
    /// tokio-postgres cannot do) is [`StoreError::InvalidConfig`].
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(invalid(
                    "sslmode=allow is not supported; use prefer or disable",
                ));
            }
            _ => {
                return Err(invalid(
                    "unknown sslmode (expected disable, prefer, require, verify-ca or verify-full)",
                ));
            }
        })
    }
}

/// What the pool dials with: the mode (for error messages) and the connector.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) mode: TlsMode,
    pub(crate) connector: MakeRustlsConnect,
}

impl Tls {
    /// The connector for `mode` and the root certificate file, and `config`
    /// set to negotiate accordingly (no TLS when every host is a Unix socket).
    pub(crate) fn new(
        mode: TlsMode,
        root_cert: Option<&Path>,
        config: &mut Config,
    ) -> Result<Self, StoreError> {
        let roots = root_cert.map(load_roots).transpose()?.map(Arc::new);
        let verifier = verifier(mode, roots)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let only_unix = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)));
        let negotiation = if only_unix {
            SslMode::Disable
        } else {
            mode.negotiation()
        };
        config.ssl_mode(negotiation);
        Ok(Self {
            mode,
            connector: MakeRustlsConnect::new(client),
        })
    }
}

/// The certificate check `mode` asks for, given the roots (if any).
fn verifier(
    mode: TlsMode,
    roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<dyn ServerCertVerifier>, StoreError> {
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let chain_only = |roots| Arc::new(ChainOnly { roots, algorithms });
    Ok(match (mode, roots) {
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
            return Err(invalid(&format!(
                "sslmode={mode} needs a root certificate: set sslrootcert in the URL \
                 or PostgresTokenStoreBuilder::tls_root_cert"
            )));
        }
        (TlsMode::VerifyFull, Some(roots)) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| invalid(&format!("TLS root certificate: {e}")))?
        }
        (_, roots) => chain_only(roots),
    })
}

/// The roots in the PEM file at `path`.
fn load_roots(path: &Path) -> Result<RootCertStore, StoreError> {
    let shown = path.display();
    if path == Path::new("system") {
        return Err(invalid(
            "sslrootcert=system (the system's roots) is not supported; give a PEM file",
        ));
    }
    let pem = std::fs::read(path).map_err(|e| {
        invalid(&format!(
            "cannot read the TLS root certificate file {shown}: {}",
            e.kind()
        ))
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(&format!(
                "the TLS root certificate file {shown} is not PEM: {e}"
            ))
        })?;
    if certs.is_empty() {
        return Err(invalid(&format!(
            "the TLS root certificate file {shown} holds no PEM CERTIFICATE"
        )));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            invalid(&format!(
                "the TLS root certificate file {shown} holds a certificate that is no \
                 usable trust anchor: {e}"
            ))
        })?;
    }
    Ok(roots)
}

fn invalid(message: &str) -> StoreError {
    StoreError::InvalidConfig(message.to_owned())
}

/// `require` / `prefer` (no roots: the certificate is taken as it is) and
/// `verify-ca` (roots: its chain is checked, not the name). The handshake's
/// signatures are verified in every case.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a connection's TLS failed, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The server answered the TLS request with "no".
    NotOffered,
    /// The server's certificate was refused (rustls's reason).
    Verification(String),
    /// Anything else in the handshake.
    Handshake(String),
}

/// The TLS failure behind a failed connect, if that is what it was.
pub(crate) fn failure(e: &tokio_postgres::Error) -> Option<TlsFailure> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // io::Error's own `source` skips the error it wraps: look inside.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(c, |i| i as &(dyn std::error::Error + 'static));
        if let Some(rustls) = inner.downcast_ref::<rustls::Error>() {
            return Some(classify(rustls));
        }
        cause = c.source();
    }
    // tokio-postgres's Display of a TLS error is its kind alone.
    if e.to_string() != "error performing TLS handshake" {
        return None;
    }
    let why = std::error::Error::source(e).map(ToString::to_string);
    Some(match why.as_deref() {
        Some("server does not support TLS") => TlsFailure::NotOffered,
        Some(other) => TlsFailure::Handshake(other.to_owned()),
        None => TlsFailure::Handshake("no reason given".to_owned()),
    })
}

fn classify(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => TlsFailure::Verification(e.to_string()),
        other => TlsFailure::Handshake(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_and_parse_as_libpq_names() {
        for mode in [
            TlsMode::Disable,
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            assert_eq!(mode.to_string().parse::<TlsMode>(), Ok(mode));
        }
        assert!(matches!(
            "allow".parse::<TlsMode>(),
            Err(StoreError::InvalidConfig(m)) if m.contains("allow")
        ));
    }

    #[test]
    fn verification_modes_need_a_root_certificate() {
        for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
            let mut config = Config::new();
            config.host("db");
            let err = Tls::new(mode, None, &mut config).err().expect("refused");
            assert!(
                matches!(&err, StoreError::InvalidConfig(m) if m.contains("root certificate")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_missing_or_non_pem_root_file_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("absent.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        for (path, says) in [
            (&missing, "cannot read"),
            (&garbage, "holds no PEM CERTIFICATE"),
            (&broken, "trust anchor"),
        ] {
            let mut config = Config::new();
            config.host("db");
            let err = Tls::new(TlsMode::VerifyFull, Some(path), &mut config)
                .err()
                .expect("refused");
            let text = err.to_string();
            assert!(matches!(err, StoreError::InvalidConfig(_)), "{err:?}");
            assert!(
                text.contains(says) && text.contains(&path.display().to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn only_unix_socket_hosts_negotiate_no_tls() {
        let mut unix = Config::new();
        unix.host_path("/run/postgresql");
        Tls::new(TlsMode::Require, None, &mut unix).expect("connector");
        assert_eq!(unix.get_ssl_mode(), SslMode::Disable);
        let mut mixed = Config::new();
        mixed.host_path("/run/postgresql").host("db");
        Tls::new(TlsMode::Require, None, &mut mixed).expect("connector");
        assert_eq!(mixed.get_ssl_mode(), SslMode::Require);
        let mut tcp = Config::new();
        tcp.host("db");
        Tls::new(TlsMode::Prefer, None, &mut tcp).expect("connector");
        assert_eq!(tcp.get_ssl_mode(), SslMode::Prefer);
    }
}
