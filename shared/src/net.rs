//! Why an HTTP request got no answer, for the decision "wait and ask again" versus "fail and name the
//! setting that fixes it": a timeout or a refused connection may pass by itself; a name that does not
//! resolve or a certificate that is not trusted will not, however often the request is repeated. Also what
//! the HTTPS clients share: the error chain, extra trusted CAs, the blocking facades' runtime.

/// The cause of a request that got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    /// The request timed out.
    Timeout,
    /// The host was reached but refused or dropped the connection, or the network is unreachable.
    Unreachable,
    /// The host name does not resolve (a wrong endpoint, or no DNS).
    Dns,
    /// The TLS handshake failed (an untrusted certificate, a TLS-intercepting proxy, not TLS at all).
    Tls,
    /// Anything else.
    Other,
}

impl TransportCause {
    /// Whether the same request may succeed later without anything being changed.
    pub fn may_pass(self) -> bool {
        matches!(self, TransportCause::Timeout | TransportCause::Unreachable)
    }
}

/// Classifies an error chain (a `reqwest::Error` and its sources).
pub fn classify(e: &(dyn std::error::Error + 'static), timeout: bool) -> TransportCause {
    if timeout {
        return TransportCause::Timeout;
    }
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io_kind = None;
    while let Some(s) = cur {
        text.push_str(&s.to_string().to_ascii_lowercase());
        text.push('\n');
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        cur = s.source();
    }
    classify_text(&text, io_kind)
}

/// The classification on the lower-cased text of an error chain and the first I/O error kind in it.
pub fn classify_text(text: &str, io_kind: Option<std::io::ErrorKind>) -> TransportCause {
    use std::io::ErrorKind as K;
    let text = text.to_ascii_lowercase();
    if [
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no address associated",
    ]
    .iter()
    .any(|t| text.contains(t))
    {
        return TransportCause::Dns;
    }
    if ["certificate", "tls", "handshake", "peer sent", "alert"]
        .iter()
        .any(|t| text.contains(t))
    {
        return TransportCause::Tls;
    }
    match io_kind {
        Some(K::TimedOut) => TransportCause::Timeout,
        Some(
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable,
        ) => TransportCause::Unreachable,
        _ if text.contains("connection refused") || text.contains("connection reset") => {
            TransportCause::Unreachable
        }
        _ => TransportCause::Other,
    }
}

/// An error with its sources, `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// `builder` trusting, beside the system roots, every CA certificate of the PEM bundle `pem` (the
/// emulator's, a TLS-intercepting proxy's); the reason when `pem` is not PEM or holds no certificate.
pub fn trust_pem(mut builder: reqwest::ClientBuilder, pem: &[u8]) -> Result<reqwest::ClientBuilder, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| chain(&e))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    for c in certs {
        builder = builder.add_root_certificate(c);
    }
    Ok(builder)
}

/// The single-threaded runtime a blocking facade drives its async client on (the CLIs' Import/Export and
/// Resource Manager clients, and their tests); the reason when it cannot start.
pub fn blocking_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_the_texts_reqwest_gives() {
        use std::io::ErrorKind as K;
        let c = |t: &str, k| classify_text(t, k);
        assert_eq!(
            c("error sending request: client error (connect): dns error: failed to lookup address information: name or service not known", None),
            TransportCause::Dns
        );
        assert_eq!(
            c(
                "client error (connect): invalid peer certificate: unknownissuer",
                Some(K::InvalidData)
            ),
            TransportCause::Tls
        );
        assert_eq!(
            c(
                "client error (connect): tcp connect error: connection refused (os error 111)",
                Some(K::ConnectionRefused)
            ),
            TransportCause::Unreachable
        );
        assert_eq!(
            c("operation timed out", Some(K::TimedOut)),
            TransportCause::Timeout
        );
        assert_eq!(c("something else", None), TransportCause::Other);
        assert!(TransportCause::Unreachable.may_pass() && !TransportCause::Tls.may_pass());
    }
}
