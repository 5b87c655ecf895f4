//! Turning TLS failures into sentences that say which side refused what, and what to do.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError, Error as TlsError};

/// Why the server side of a handshake failed, for its log.
pub fn explain_server(e: &std::io::Error) -> String {
    let e: &(dyn StdError + 'static) = e;
    match tls_error(e) {
        Some(TlsError::InvalidCertificate(c)) => match c {
            // A CA of the same name but another key shows as a bad signature.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the client's certificate was not issued by this cluster's CA".into()
            }
            c if expired(c) => "the client's certificate has expired or is not yet valid".into(),
            other => format!("the client's certificate is invalid ({other:?})"),
        },
        Some(TlsError::NoCertificatesPresented) => {
            "the client presented no certificate (mutual TLS is required)".into()
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

fn expired(c: &CertificateError) -> bool {
    matches!(
        c,
        CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
    )
}

fn tls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
    if let Some(t) = e.downcast_ref::<TlsError>() {
        return Some(t);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<TlsError>())
}

/// What a client should be told about a failed connection, if TLS is the cause.
pub fn explain_client(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = tls_error(err) {
            return Some(client_sentence(t));
        }
        cur = err.source();
    }
    None
}

fn client_sentence(t: &TlsError) -> String {
    match t {
        TlsError::AlertReceived(AlertDescription::UnknownCA | AlertDescription::DecryptError) => {
            "the node refused our certificate: it was not issued by the cluster's CA (check the \
             certificate and key you gave, or $RECALL_PKI)"
                .into()
        }
        TlsError::AlertReceived(AlertDescription::CertificateExpired) => {
            "the node refused our certificate: it has expired (or is not yet valid); issue a new \
             one"
            .into()
        }
        TlsError::AlertReceived(AlertDescription::CertificateRequired) => {
            "the node requires a client certificate (mutual TLS)".into()
        }
        TlsError::AlertReceived(a) => format!("the node refused the TLS handshake ({a:?})"),
        TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "the node's certificate was not issued by our CA (is --ca the cluster's CA?)".into(),
        TlsError::InvalidCertificate(c) if expired(c) => {
            "the node's certificate has expired (or is not yet valid)".into()
        }
        TlsError::InvalidCertificate(CertificateError::Other(o)) => {
            format!("the node's certificate was refused: {o}")
        }
        TlsError::InvalidMessage(_) => {
            "the server did not answer with TLS (is it a recall node, started with certificates?)"
                .into()
        }
        other => format!("TLS failed: {other}"),
    }
}

/// The message of a failed call: the TLS cause when there is one, else the status message.
pub fn describe(s: &tonic::Status) -> String {
    explain_client(s).unwrap_or_else(|| s.message().to_owned())
}
