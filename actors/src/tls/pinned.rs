//! A server certificate trusted as itself because it is in tlsCaFile.
//!
//! `openssl req -x509` makes a self-signed certificate marked `CA:TRUE` by default, and
//! OpenSSL-based clients (`redis-cli --tls --cacert`) accept it as the server's when it is the
//! CA file. webpki refuses any CA certificate as the server's own (`CaUsedAsEndEntity`). This
//! verifier accepts it when it is byte for byte a certificate of the file, and still checks its
//! name and validity period; everything else is the WebPki verifier's.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct PinningVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of tlsCaFile (none with the system's store).
    pinned: Vec<CertificateDer<'static>>,
}

impl PinningVerifier {
    pub(super) fn new(webpki: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        PinningVerifier { webpki, pinned }
    }
}

/// Whether rustls refused a certificate because it is a CA's.
pub(super) fn is_ca_used_as_end_entity(e: &Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let refused =
            match self
                .webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            };
        if !is_ca_used_as_end_entity(&refused) || !self.pinned.iter().any(|c| c == end_entity) {
            return Err(refused);
        }
        // webpki checks the server certificate's validity period before its basic constraints:
        // one refused as a CA's is within its period (an expired one got CertExpired). A test
        // holds this.
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|e| match e {
                webpki::Error::CertNotValidForName(cx) => CertificateError::NotValidForNameContext {
                    expected: cx.expected,
                    presented: cx.presented,
                },
                _ => CertificateError::NotValidForName,
            })?;
        Ok(ServerCertVerified::assertion())
    }

    // The handshake's signatures are checked with the certificate's key, pinned or not.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}
