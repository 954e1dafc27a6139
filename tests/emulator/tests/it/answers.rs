//! Issue 17, "response sizes": the HTTPS clients of the Import/Export APIs (classic and Resource Manager) and
//! of the Entra ID token endpoint read an answer only up to their cap. A TLS server on 127.0.0.1 (the
//! emulator's server certificate, so the clients trust it through the emulator's CA) answers every request
//! with 64 MiB, chunked or with a `Content-Length`; each client fails with an error naming the endpoint and
//! the limit, and the server sees the connection dropped long before it has sent everything.

use crate::harness::{self, Emulator};
use seedship_emulator::EmulatorDir;
use seedship_shared::api::arm::{ArmClientOptions, BlockingArmClient};
use seedship_shared::api::BlockingApiClient;
use seedship_shared::entra::{AccessToken, CredentialChoice, EntraError, EntraOptions, TokenSource};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the server sends: 64 MiB of JSON-ish filler.
const SENT: usize = 64 << 20;

/// A TLS server answering every request with [`SENT`] bytes; reports the bytes it got out per connection.
struct BigAnswers {
    url: String,
    sent: mpsc::Receiver<usize>,
}

impl BigAnswers {
    fn start(dir: &std::path::Path, content_length: bool) -> BigAnswers {
        let config = seedship_emulator::tls::server_config(&EmulatorDir::new(dir)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (tx, sent) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { return };
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let n = serve_one(&mut tls, content_length);
                if tx.send(n).is_err() {
                    return;
                }
            }
        });
        BigAnswers { url, sent }
    }

    /// The bytes of body the server got out on its latest connection.
    fn last_sent(&self) -> usize {
        let mut last = self.sent.recv_timeout(Duration::from_secs(30)).unwrap();
        while let Ok(n) = self.sent.try_recv() {
            last = n;
        }
        last
    }
}

/// Reads one request's headers and answers with [`SENT`] bytes until the client goes away.
fn serve_one(tls: &mut impl ReadWrite, content_length: bool) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return 0,
        }
    }
    let framing = if content_length {
        format!("Content-Length: {SENT}")
    } else {
        "Transfer-Encoding: chunked".to_owned()
    };
    let header = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    if tls.write_all(header.as_bytes()).is_err() {
        return 0;
    }
    let piece = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < SENT {
        let ok = if content_length {
            tls.write_all(&piece)
        } else {
            tls.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .and_then(|()| tls.write_all(&piece))
                .and_then(|()| tls.write_all(b"\r\n"))
        };
        if ok.and_then(|()| tls.flush()).is_err() {
            break;
        }
        sent += piece.len();
    }
    sent
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[derive(Debug)]
struct FixedToken;

impl TokenSource for FixedToken {
    fn token(&self, _scope: &str) -> Result<AccessToken, EntraError> {
        Ok(AccessToken {
            token: zeroize::Zeroizing::new("not-checked".into()),
            expires_at: SystemTime::now() + Duration::from_secs(3600),
        })
    }
}

fn assert_capped(err: &str, url: &str, limit: usize, server: &BigAnswers) {
    assert!(
        err.contains(url) && err.contains(&limit.to_string()),
        "the error names the endpoint {url} and the limit {limit}: {err}"
    );
    let sent = server.last_sent();
    assert!(
        sent < SENT / 2,
        "the client dropped the answer early, the server got only {sent} of {SENT} bytes out"
    );
}

#[test]
fn api_answers_longer_than_the_cap_are_refused_unread() {
    let dir = harness::init_dir();
    // The emulator only lends its identity and CA: the client talks to the big-answer server.
    let emu = Emulator::start(dir.path());
    let ca = std::fs::read(emu.ca()).unwrap();
    let limit = seedship_shared::net::MAX_API_ANSWER;
    for content_length in [false, true] {
        let server = BigAnswers::start(dir.path(), content_length);

        let mut classic = emu.client_options();
        classic.service_management_url = server.url.clone();
        classic.retry.max_attempts = 1;
        let err = BlockingApiClient::new(classic)
            .unwrap()
            .list_locations(None)
            .unwrap_err();
        assert!(
            matches!(err, seedship_shared::api::ApiError::TooLong { .. }),
            "{err:?}"
        );
        assert_capped(&err.to_string(), &server.url, limit, &server);

        let mut arm = ArmClientOptions::new(&server.url, &emu.sub, "rg", Arc::new(FixedToken));
        arm.ca_pem = Some(ca.clone());
        arm.retry.max_attempts = 1;
        let err = BlockingArmClient::new(arm).unwrap().list_locations().unwrap_err();
        assert!(
            matches!(err, seedship_shared::api::arm::ArmError::TooLong { .. }),
            "{err:?}"
        );
        assert_capped(&err.to_string(), &server.url, limit, &server);

        let mut entra = EntraOptions::new(CredentialChoice::Secret(zeroize::Zeroizing::new("s".into())));
        entra.tenant = Some("t".into());
        entra.client_id = Some("c".into());
        entra.authority = server.url.clone();
        entra.ca_pem = Some(ca.clone());
        let err = entra
            .token_source()
            .unwrap()
            .token("https://storage.azure.com/.default")
            .unwrap_err()
            .to_string();
        assert_capped(&err, &server.url, 256 << 10, &server);
    }
}
