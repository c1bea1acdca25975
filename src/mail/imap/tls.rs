//! TLS for the session: rustls with the ring provider only (one TLS stack
//! in the binary), trusting webpki's roots, or any certificate when the
//! account allows it.

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::{ImapConfig, ImapError};

pub(super) async fn tls_handshake(
    cfg: &ImapConfig,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let config = tls_config(cfg.accept_invalid_certs).map_err(|e| ImapError::Tls {
        host: cfg.host.clone(),
        reason: e.to_string(),
    })?;
    let name = ServerName::try_from(cfg.host.clone()).map_err(|e| ImapError::Tls {
        host: cfg.host.clone(),
        reason: format!("not a valid server name: {e}"),
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|error| {
            // tokio-rustls reports rustls errors as io::Error(InvalidData).
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls_error @ rustls::Error::InvalidCertificate(_)) => {
                    ImapError::Certificate {
                        host: cfg.host.clone(),
                        reason: rustls_error.to_string(),
                    }
                }
                _ => ImapError::Tls {
                    host: cfg.host.clone(),
                    reason: error.to_string(),
                },
            }
        })
}

/// The two client configurations, built once: thousands of accounts
/// reconnecting should not each copy the root store.
///
/// The ring provider is named explicitly rather than taken from rustls's
/// process-wide default, which is unset unless something installs it (and
/// cannot be chosen when two providers are compiled in).
fn tls_config(accept_invalid_certs: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    static VERIFIED: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static ANY_CERTIFICATE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let cell = if accept_invalid_certs {
        &ANY_CERTIFICATE
    } else {
        &VERIFIED
    };
    if let Some(config) = cell.get() {
        return Ok(config.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // A racing thread may have set it first; both are the same.
    Ok(cell.get_or_init(|| Arc::new(config)).clone())
}

/// Trusts any certificate chain (the account's "accept invalid
/// certificates" option) but still checks the handshake signatures, so the
/// server must own the key of the certificate it presents.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_configs_build_with_ring_alone() {
        assert!(tls_config(false).is_ok());
        assert!(tls_config(true).is_ok());
    }
}
