//! A running seedship-emulator for one test, shared by the emulator's and diskprep's test suites: `init` into
//! a directory (seed 001's subscription), `serve` on 127.0.0.1:0 in a thread with its own runtime, stopped
//! through the shutdown future when dropped; raw HTTPS requests with or without the management certificate;
//! the operator endpoints (clock, job state, receiving drives). A crate of its own because seedship-testkit
//! cannot depend on the emulator (the emulator's tests depend on testkit).

use seedship_emulator::datacentre::ReceiveStatus;
use seedship_emulator::entra::EntraAppFile;
use seedship_emulator::{EmulatorDir, InitOptions, ServeConfig};
use seedship_shared::api::arm::{ArmClientOptions, BlockingArmClient};
use seedship_shared::api::{ApiClientOptions, BlockingApiClient, ManagementIdentity};
use seedship_shared::entra::{CredentialChoice, EntraOptions};
use seedship_shared::publish_settings::PublishSettings;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seed 001's sample subscription.
pub const SEED_SUB: &str = "afb1a4eb-bc88-4ce1-b1af-dfec80067464";

/// One emulator, stopped when dropped.
pub struct Emulator {
    pub dir: PathBuf,
    pub url: String,
    pub sub: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Initialises `dir` as an emulator with seed 001's subscription id and no storage account.
pub fn init(dir: &Path) {
    seedship_emulator::init(&InitOptions {
        dir: dir.to_path_buf(),
        subscription_id: Some(SEED_SUB.into()),
        subscription_name: "test".into(),
        storage_account: None,
        url: None,
        listen_port: None,
    })
    .expect("emulator init");
}

/// Initialises a fresh temporary emulator directory with seed 001's subscription id.
pub fn init_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    init(dir.path());
    dir
}

impl Emulator {
    /// Serves `dir` on a free port, first initialising it ([`init`]) when it holds no emulator yet.
    pub fn start(dir: &Path) -> Emulator {
        if !EmulatorDir::new(dir).config().exists() {
            init(dir);
        }
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let config = ServeConfig {
            dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let bound = seedship_emulator::bind(&config).await.expect("bind");
                url_tx.send(bound.url().to_string()).unwrap();
                bound
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let url = url_rx.recv().expect("emulator started");
        let written = std::fs::read_to_string(dir.join("url")).unwrap();
        assert_eq!(written.trim(), url, "serve writes its URL into DIR/url");
        Emulator {
            dir: dir.to_path_buf(),
            url,
            sub: SEED_SUB.into(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Client options from the directory's publish-settings file, trusting the emulator's CA.
    pub fn client_options(&self) -> ApiClientOptions {
        let ps = PublishSettings::load(&self.publish_settings()).expect("publish settings");
        let sub = ps.subscription(&self.sub).expect("subscription");
        assert_eq!(
            sub.service_management_url, self.url,
            "serve points the publish settings at itself"
        );
        let mut opts = ApiClientOptions::from_subscription(sub)
            .expect("identity")
            .with_management_ca_file(&self.ca())
            .expect("CA");
        opts.retry.first_delay = std::time::Duration::from_millis(10);
        opts
    }

    pub fn client(&self) -> BlockingApiClient {
        BlockingApiClient::new(self.client_options()).expect("client")
    }

    /// `entra-app.json`: the application registration `init` wrote (serve points its URLs at itself).
    pub fn entra_app(&self) -> EntraAppFile {
        let path = self.dir.join("entra-app.json");
        serde_json::from_slice(&std::fs::read(&path).expect("entra-app.json")).expect("entra-app.json")
    }

    /// Sign-in options for the registered application with `credential`, against the emulator's authority.
    pub fn entra_options(&self, credential: CredentialChoice) -> EntraOptions {
        let app = self.entra_app();
        EntraOptions {
            tenant: Some(app.tenant),
            client_id: Some(app.client_id),
            authority: app.authority,
            management_endpoint: app.management_endpoint,
            management_audience: Some(app.management_audience),
            credential,
            ca_pem: Some(std::fs::read(app.ca_certificate).expect("CA")),
        }
    }

    /// The registered application's certificate credential (certificate and key from `entra-app.json`).
    pub fn certificate_credential(&self) -> CredentialChoice {
        let app = self.entra_app();
        CredentialChoice::Certificate {
            cert: app.certificate,
            key: Some(app.private_key),
        }
    }

    /// A fresh Entra ID access token for the management audience from the emulator's token endpoint, signed
    /// in with the registered application's certificate.
    pub fn management_token(&self) -> String {
        let opts = self.entra_options(self.certificate_credential());
        let tokens = opts.token_source().expect("certificate credential");
        tokens
            .token(&opts.management_scope())
            .expect("management token")
            .token
            .to_string()
    }

    /// Resource Manager client options for resource group `rg`, signed in with `credential`.
    pub fn arm_options_with(&self, rg: &str, credential: CredentialChoice) -> ArmClientOptions {
        let entra = self.entra_options(credential);
        let tokens = entra.token_source().expect("credential");
        let mut opts = ArmClientOptions::new(&entra.management_endpoint, &self.sub, rg, tokens);
        opts.scope = entra.management_scope();
        opts.ca_pem = Some(std::fs::read(self.ca()).expect("CA"));
        opts.retry.first_delay = Duration::from_millis(10);
        opts
    }

    /// Resource Manager client options for resource group `rg`, signed in with the application's certificate.
    pub fn arm_options(&self, rg: &str) -> ArmClientOptions {
        self.arm_options_with(rg, self.certificate_credential())
    }

    /// A Resource Manager client for resource group `rg`.
    pub fn arm_client(&self, rg: &str) -> BlockingArmClient {
        BlockingArmClient::new(self.arm_options(rg)).expect("ARM client")
    }

    /// The management identity (PEM key + chain).
    pub fn identity(&self) -> ManagementIdentity {
        self.client_options().identity
    }

    /// The publish-settings file `init` wrote (`serve` points it at itself).
    pub fn publish_settings(&self) -> PathBuf {
        self.dir.join("emulator.publishsettings")
    }

    /// The emulator's CA certificate (for `--management-ca`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `https://host:port/<sub>/services/importexport`.
    pub fn base(&self) -> String {
        format!("{}/{}/services/importexport", self.url, self.sub)
    }

    /// Stops the emulator and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let joined = t.join();
            // A second panic while a failing test unwinds would abort the test binary.
            if !std::thread::panicking() {
                joined.expect("emulator thread");
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One raw HTTP exchange with full control over headers (for the documented error cases).
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an `odata.error` answer with this status and ExtendedCode.
    #[track_caller]
    pub fn assert_error(&self, status: u16, extended: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        let e = &v["odata.error"];
        assert_eq!(e["code"], serde_json::json!(status.to_string()));
        assert_eq!(e["message"]["lang"], "en-US");
        assert!(e["message"]["value"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(e["azure.values"][0]["ExtendedCode"], extended, "{v}");
    }
}

/// Sends one request. `cert`: present the management certificate. `headers` are added as given.
pub fn raw(
    emu: &Emulator,
    cert: bool,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Raw {
    raw_url(
        emu,
        cert,
        method,
        &format!("{}{}", emu.base(), path),
        headers,
        body,
    )
}

/// Like [`raw`] with a full URL.
pub fn raw_url(
    emu: &Emulator,
    cert: bool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Raw {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(emu.ca()).unwrap()).unwrap());
    if cert {
        builder = builder.identity(reqwest::Identity::from_pem(emu.identity().pem()).unwrap());
    }
    let client = builder.build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        // reqwest would send "Accept: */*", which the service refuses (406)
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
            req = req.header("accept", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        // the operator endpoints want the emulator's operator credential besides the certificate
        let given = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-seedship-operator-token"));
        if url.contains("/_operator/") && !given {
            if let Ok(token) = std::fs::read_to_string(emu.dir.join("operator.token")) {
                req = req.header("x-seedship-operator-token", token.trim());
            }
        }
        if let Some(b) = body {
            req = req.body(b.to_vec());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap().to_vec();
        Raw {
            status,
            headers,
            body,
        }
    })
}

/// Operator: moves the emulator clock forward.
pub fn advance_clock(emu: &Emulator, seconds: i64) {
    let body = format!("{{\"AdvanceSeconds\":{seconds}}}");
    let r = raw(emu, true, "POST", "/_operator/clock", &[], Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Operator: sets a job's state as the data centre would.
pub fn set_state(emu: &Emulator, account: &str, job: &str, state: &str) {
    let body = format!("{{\"State\":\"{state}\"}}");
    let path = format!("/_operator/storageaccounts/{account}/jobs/{job}/state");
    let r = raw(emu, true, "POST", &path, &[], Some(body.as_bytes()));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// Operator: the drives at `drives` arrive for job `job` (`POST .../receive`); the answer as it came.
/// Each existing drive image is put into the emulator's inbox folder first (hard-linked, else copied), since
/// the endpoint takes file names there; a missing one is named all the same.
pub fn receive(emu: &Emulator, account: &str, job: &str, drives: &[&Path]) -> Raw {
    let inbox = emu.dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let names: Vec<std::ffi::OsString> = drives
        .iter()
        .map(|d| {
            let name = d.file_name().expect("a drive image file").to_owned();
            let into = inbox.join(&name);
            if d.exists() && !into.exists() && std::fs::hard_link(d, &into).is_err() {
                std::fs::copy(d, &into).unwrap();
            }
            name
        })
        .collect();
    let names: Vec<&str> = names.iter().map(|n| n.to_str().unwrap()).collect();
    let body = serde_json::json!({ "Drives": names });
    let path = format!("/_operator/storageaccounts/{account}/jobs/{job}/receive");
    raw(emu, true, "POST", &path, &[], Some(body.to_string().as_bytes()))
}

/// Operator: the job's last receive (`GET .../receive`), or the error answer.
pub fn receive_status(emu: &Emulator, account: &str, job: &str) -> Result<ReceiveStatus, Box<Raw>> {
    let path = format!("/_operator/storageaccounts/{account}/jobs/{job}/receive");
    let r = raw(emu, true, "GET", &path, &[], None);
    match r.status {
        200 => Ok(serde_json::from_slice(&r.body).expect("receive status")),
        _ => Err(Box::new(r)),
    }
}

/// Operator: waits until the job's receive has ended (at most `limit`) and returns how it ended.
pub fn wait_received(emu: &Emulator, account: &str, job: &str, limit: Duration) -> ReceiveStatus {
    let deadline = Instant::now() + limit;
    loop {
        let status = receive_status(emu, account, job).unwrap_or_else(|r| {
            panic!(
                "receive status: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        });
        if !status.running {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the receive of {job} still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
