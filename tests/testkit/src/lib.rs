//! The harness seedship's test suites share: Azurite and the emulator's Import/Export service
//! ([`EmulatorServer`]) started on free loopback ports, and helpers to find the project's pinned test
//! dependencies.
//!
//! Azurite comes from `tests/package.json` (installed with `npm ci` in `tests/`). A test that needs it and
//! does not find it fails with the command that installs it; it never skips.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The well-known development account of Azurite.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Its key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Writes a publish-settings file holding `subscription`, for tests whose staging job never talks to a
/// service with it: `offline start` only checks that the file parses and holds the subscription (its
/// management certificate, three bytes, is not usable).
pub fn write_offline_publish_settings(path: &Path, subscription: &str) {
    std::fs::write(
        path,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<PublishData><PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
<Subscription ServiceManagementUrl="https://127.0.0.1:8443/" Id="{subscription}" Name="t" ManagementCertificate="AQID" />
</PublishProfile></PublishData>"#
        ),
    )
    .unwrap();
}

/// Writes `data` into a new file created with mode 0600 (a test's secret: a key, a certificate, a client
/// secret), never readable by others even for a moment.
pub fn write_private(path: &Path, data: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(data).unwrap();
}

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives at <root>/tests/testkit")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1 (bound, read and released; a race with another process is unlikely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The Azurite blob-service launcher: `$SEEDSHIP_AZURITE` or `tests/node_modules/.bin/azurite-blob`.
/// Panics with the install command when it is missing.
pub fn azurite_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SEEDSHIP_AZURITE") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("tests/node_modules/.bin/azurite-blob");
    assert!(
        p.exists(),
        "Azurite is not installed ({} is missing). Install the pinned version with:\n    \
         (cd {} && npm ci)\nor run the whole suite with tests/run, which does it.",
        p.display(),
        workspace_root().join("tests").display()
    );
    p
}

/// A running Azurite blob service on a free loopback port, with its data in a temporary folder.
/// Dropping it stops the process and removes the data.
#[derive(Debug)]
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    location: tempfile::TempDir,
    log: PathBuf,
    /// HTTPS with bearer tokens (`--oauth basic --cert --key`): the certificate and key PEM files.
    oauth_tls: Option<(PathBuf, PathBuf)>,
}

impl Azurite {
    /// Starts Azurite and waits until it answers.
    pub fn start() -> Azurite {
        let location = tempfile::Builder::new()
            .prefix("seedship-azurite-")
            .tempdir()
            .expect("temporary folder for Azurite");
        let mut a = Azurite {
            child: None,
            port: free_port(),
            log: location.path().join("azurite.log"),
            location,
            oauth_tls: None,
        };
        a.spawn();
        a
    }

    /// Starts Azurite over HTTPS with `cert`/`key` (PEM; the certificate must name 127.0.0.1) and bearer
    /// tokens accepted (`--oauth basic`: Azurite checks a token's issuer, audience and lifetime, not its
    /// signature). Shared Key still works too.
    pub fn start_oauth(cert: &Path, key: &Path) -> Azurite {
        let location = tempfile::Builder::new()
            .prefix("seedship-azurite-")
            .tempdir()
            .expect("temporary folder for Azurite");
        let mut a = Azurite {
            child: None,
            port: free_port(),
            log: location.path().join("azurite.log"),
            location,
            oauth_tls: Some((cert.to_path_buf(), key.to_path_buf())),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let data = self.location.path().join("data");
        std::fs::create_dir_all(&data).expect("Azurite data folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("Azurite log file");
        let child = Command::new(azurite_binary())
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .args(["--silent", "--disableTelemetry", "--location"])
            .arg(&data)
            .args(self.oauth_tls.iter().flat_map(|(cert, key)| {
                [
                    "--oauth".into(),
                    "basic".into(),
                    "--cert".into(),
                    cert.as_os_str().to_owned(),
                    "--key".into(),
                    key.as_os_str().to_owned(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Azurite ({}): {e}", azurite_binary().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "Azurite exited with {status} before answering; log:\n{}",
                    self.log_text()
                );
            }
            if self.oauth_tls.is_some()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                // HTTPS: listening is enough (a TLS handshake here would need a client of its own)
                return;
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /{AZURITE_ACCOUNT}?comp=list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut answer = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_exact(&mut answer).is_ok()
                    && answer.starts_with(b"HTTP/1.1")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Azurite did not answer on port {} within 30 s; log:\n{}",
            self.port,
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The blob endpoint with the account, path style: `http://127.0.0.1:PORT/devstoreaccount1` (https
    /// for [`Azurite::start_oauth`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.oauth_tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// A connection string for the Azure SDKs.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// Stops the process (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process gracefully (SIGTERM, so Azurite saves its metadata database; SIGKILL after 15 s),
    /// keeping its data. A SIGKILLed Azurite loses the last seconds of its metadata (containers, blobs,
    /// page ranges), so tests that restart it and expect the data back stop it with this.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A binary of this workspace, built next to the running test (`<target>/<profile>/<name>`; a test runs from
/// `<target>/<profile>/deps/`). `cargo test --workspace` builds every binary before running tests; with
/// `cargo test -p <package>` only that package's binaries are built (and the others may be stale), so build
/// them first: `cargo build -p seedship-agent -p seedship-diskprep`. Panics with that command when missing.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps");
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "the binary {name} is not built ({} is missing). Build it with\n    \
         cargo build -p {name}\nor run `cargo test --workspace`, which builds every binary first.",
        p.display()
    );
    p
}

/// `seedship-emulator serve --dir DIR` on a free port of 127.0.0.1 (it writes its URL into `DIR/url` and
/// the port into the publish settings; `seedship-emulator init` made the folder), its output appended to a
/// log file; killed when dropped. Panics when it has not written its URL within 30 s.
pub struct EmulatorServer {
    dir: PathBuf,
    child: Option<Child>,
}

impl EmulatorServer {
    /// Starts the service of the emulator folder `dir`, appending its output to `log`.
    pub fn start(dir: &Path, log: &Path) -> EmulatorServer {
        let _ = std::fs::remove_file(dir.join("url"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let child = Command::new(cargo_bin("seedship-emulator"))
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .expect("start seedship-emulator serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(dir.join("url")).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the emulator wrote no url within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        EmulatorServer {
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    /// Stops the service (SIGKILL); the folder stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The publish-settings file `init` wrote (with the port `serve` listens on).
    pub fn publish_settings(&self) -> PathBuf {
        self.dir.join("emulator.publishsettings")
    }

    /// The CA certificate of the service's TLS certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `python3` with a script file from `tests/python/`, returning stdout; panics with stderr on failure
/// and with the install command when the pinned packages are missing.
pub fn run_python(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = workspace_root().join("tests/python").join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", path.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        panic!(
            "a pinned Python package is missing: install them with\n    python3 -m pip install -r {}\n{stderr}",
            workspace_root().join("tests/requirements.txt").display()
        );
    }
    assert!(
        out.status.success(),
        "python3 {script} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout).expect("python output is UTF-8")
}

/// Runs `cmd`, which reads a secret from the FIFO `fifo` (made here): while the command waits on the FIFO,
/// reads its `/proc/<pid>/cmdline`, then writes `secret` into the FIFO and waits for the command. Returns the
/// output and the command line as the kernel showed it to every user. Panics if the command ends without
/// opening the FIFO.
pub fn run_with_secret_fifo(cmd: &mut Command, fifo: &Path, secret: &str) -> (Output, Vec<u8>) {
    use std::os::unix::fs::OpenOptionsExt;
    let made = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut writer = loop {
        // without a reader yet, a non-blocking open for writing fails with ENXIO
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => break f,
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = child.try_wait().expect("poll the command") {
                    let out = child.wait_with_output().expect("collect the output");
                    panic!(
                        "the command ended ({status}) without reading the secret from {}: {}",
                        fifo.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the command never opened {}: {e}", fifo.display()),
        }
    };
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).expect("read the command line");
    writer
        .write_all(secret.as_bytes())
        .and_then(|_| writer.write_all(b"\n"))
        .expect("write the secret");
    drop(writer);
    (child.wait_with_output().expect("wait for the command"), cmdline)
}
