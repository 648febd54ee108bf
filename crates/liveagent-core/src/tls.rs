//! [`TlsRoots`]: which certificate authorities the HTTPS and WSS clients trust.
//!
//! By default the clients trust the Mozilla root store bundled with `webpki-roots`, the
//! same on every machine. A server with a self-signed certificate or one issued by a
//! private CA (a local vLLM or Ollama behind a TLS proxy, a corporate gateway that
//! re-signs traffic) is trusted by adding its CA with [`TlsRoots::with_pem`] or
//! [`TlsRoots::with_der`] and handing the roots to the client that connects there:
//! `SessionOptions::tls_roots` (the realtime WebSocket), `Agent::tls_roots` (the
//! Chat Completions agent) and the cascade stages' `tls_roots`.
//!
//! Every client built from [`TlsRoots::client_config`] offers only HTTP/1.1 in ALPN, so
//! no connection ever speaks HTTP/2 (and the h2 0.3 code reachable through actix-http is
//! never used).

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::{ErrorKind, LiveError};

/// The certificate authorities a client trusts: the bundled Mozilla roots plus any added.
///
/// Cheap to clone (shared); the rustls configuration is built once per set of roots.
///
/// ```
/// use liveagent_core::TlsRoots;
///
/// // The default: the bundled public roots only.
/// let public = TlsRoots::default();
/// assert_eq!(public.extra_roots(), 0);
/// // A PEM file with no certificate in it is an error, not silently "trust nothing".
/// assert!(TlsRoots::default().with_pem(b"not a certificate").is_err());
/// ```
#[derive(Clone, Default)]
pub struct TlsRoots {
    extra: Arc<Vec<CertificateDer<'static>>>,
    config: Arc<OnceLock<Arc<ClientConfig>>>,
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsRoots")
            .field("extra_roots", &self.extra.len())
            .finish()
    }
}

impl PartialEq for TlsRoots {
    fn eq(&self, other: &Self) -> bool {
        self.extra == other.extra
    }
}

impl TlsRoots {
    /// Adds every certificate of a PEM document (`-----BEGIN CERTIFICATE-----` blocks;
    /// other blocks are skipped) as a trusted root. Fails when the document holds no
    /// certificate or one that is not a usable trust anchor.
    pub fn with_pem(self, pem: impl AsRef<[u8]>) -> Result<Self, LiveError> {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem.as_ref()) {
            certs.push(cert.map_err(|e| config_error(format!("unreadable PEM: {e}")))?);
        }
        if certs.is_empty() {
            return Err(config_error(
                "no certificate in the PEM document".to_owned(),
            ));
        }
        certs
            .into_iter()
            .try_fold(self, |roots, cert| roots.add(cert))
    }

    /// Adds the PEM file at `path` (see [`with_pem`](Self::with_pem)).
    pub fn with_pem_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, LiveError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
        self.with_pem(pem)
    }

    /// Adds one DER-encoded certificate as a trusted root.
    pub fn with_der(self, der: impl Into<Vec<u8>>) -> Result<Self, LiveError> {
        self.add(CertificateDer::from(der.into()))
    }

    fn add(self, cert: CertificateDer<'static>) -> Result<Self, LiveError> {
        // Checked now (a certificate rustls cannot use as a root is a configuration error
        // the user should see when building, not a handshake failure later).
        let mut probe = RootCertStore::empty();
        probe
            .add(cert.clone())
            .map_err(|e| config_error(format!("not a usable root certificate: {e}")))?;
        let mut extra = (*self.extra).clone();
        extra.push(cert);
        Ok(TlsRoots {
            extra: Arc::new(extra),
            config: Arc::new(OnceLock::new()),
        })
    }

    /// How many roots were added to the bundled ones.
    pub fn extra_roots(&self) -> usize {
        self.extra.len()
    }

    /// The rustls client configuration: the bundled roots plus the added ones, the `ring`
    /// crypto provider, ALPN `http/1.1` only. Built once and shared by clones.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        // Also the process-wide default, which awc's connector needs (a no-op once set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        self.config
            .get_or_init(|| {
                let mut store = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                for cert in self.extra.iter() {
                    // Checked when added.
                    let _ = store.add(cert.clone());
                }
                let mut config = ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .with_root_certificates(store)
                .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(config)
            })
            .clone()
    }
}

fn config_error(message: String) -> LiveError {
    LiveError::new(ErrorKind::Config, format!("TLS roots: {message}"))
}
