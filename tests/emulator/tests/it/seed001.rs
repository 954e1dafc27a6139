//! Conformance with seed 001 (List Locations): the sample request, sent byte for byte over mutual TLS, gets
//! the documented status, headers and body; each documented error case gets its status and `odata.error`.

use crate::harness::{init_dir, raw, raw_url, Emulator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// Sends `request` as is over TLS with the management certificate; returns the head and the body.
fn exchange(emu: &Emulator, request: &[u8]) -> (String, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(emu.dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let id = emu.identity();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(id.pem())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(id.pem()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let addr = emu.url.trim_start_matches("https://").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed early: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            // skip an interim 100 Continue
            let start = if text.starts_with("HTTP/1.1 100") {
                text.find("\r\n\r\n").map_or(0, |i| i + 4)
            } else {
                0
            };
            if let Some(end) = text[start..].find("\r\n\r\n") {
                let head = text[start..start + end].to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let body_start = start + end + 4;
                if buf.len() >= body_start + len {
                    return (head, buf[body_start..body_start + len].to_vec());
                }
            }
        }
    })
}

#[test]
fn sample_request_gets_the_documented_headers_and_body() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let (head, body) = exchange(&emu, &fixture("seed001_request.http"));
    let expected_body = fixture("seed001_response_body.json");
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected_body)
    );
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let got: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let get = |name: &str| got.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let documented = String::from_utf8(fixture("seed001_response_headers.txt")).unwrap();
    for line in documented.lines().skip(1) {
        let (name, value) = line.split_once(':').unwrap();
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            // values that name the real service's build, region, request and time
            "server" | "x-ms-servedbyregion" => assert!(get(&name).is_some(), "{name} missing"),
            "x-ms-request-id" => {
                let id = get(&name).unwrap();
                assert!(
                    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{id}"
                );
            }
            "date" => assert!(httpdate::parse_http_date(get("date").unwrap()).is_ok()),
            _ => assert_eq!(get(&name), Some(value), "header {name}"),
        }
    }
}

#[test]
fn documented_error_cases() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let v = ("x-ms-version", "2014-11-01");
    let loc = "/locations?originlocation=West%20US";
    raw(&emu, true, "GET", loc, &[], None).assert_error(400, "MissingOrIncorrectVersionHeader");
    raw(&emu, true, "GET", loc, &[("x-ms-version", "2013-08-01")], None)
        .assert_error(400, "MissingOrIncorrectVersionHeader");
    raw(&emu, true, "GET", loc, &[v, ("accept", "application/xml")], None).assert_error(406, "NotAcceptable");
    raw(
        &emu,
        true,
        "GET",
        loc,
        &[v, ("accept", "application/json;odata=verbose")],
        None,
    )
    .assert_error(406, "NotAcceptable");
    raw(
        &emu,
        true,
        "GET",
        "/locations?$format=application/atom%2Bxml",
        &[v, ("accept", "application/json")],
        None,
    )
    .assert_error(406, "NotAcceptable");
    raw(&emu, true, "GET", loc, &[v, ("content-type", "text/xml")], None)
        .assert_error(406, "UnsupportedContentType");
    raw(&emu, true, "GET", loc, &[v], Some(b"hello")).assert_error(400, "InvalidContentLength");
    raw(&emu, true, "GET", loc, &[v, ("accept-language", "fr-fr")], None)
        .assert_error(400, "UnsupportedLanguage");
    raw(&emu, true, "GET", loc, &[v, ("x-ms-date", "yesterday")], None)
        .assert_error(400, "InvalidDateHeader");
    raw(&emu, true, "POST", "/locations", &[v], None).assert_error(405, "MethodNotAllowed");
    // authentication: no certificate, or a subscription the certificate is not registered for
    raw(&emu, false, "GET", loc, &[v], None).assert_error(403, "ForbiddenError");
    let other = format!(
        "{}/00000000-0000-0000-0000-000000000000/services/importexport/locations",
        emu.url
    );
    raw_url(&emu, true, "GET", &other, &[v], None).assert_error(403, "ForbiddenError");
}

#[test]
fn query_parameters_and_metadata_levels() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let v = ("x-ms-version", "2014-05-01");
    // $format overrides Accept
    let r = raw(
        &emu,
        true,
        "GET",
        "/locations?$format=application/json;odata=fullmetadata",
        &[v, ("accept", "application/xml")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;odata=fullmetadata;streaming=true;charset=utf-8")
    );
    let all = r.json();
    assert_eq!(all["odata.count"], "4");
    assert_eq!(
        all["value"][0]["odata.type"],
        "Microsoft.Cis.Services.ImportExport.Public.Location"
    );
    let we = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["Name"] == "West Europe")
        .unwrap()
        .clone();
    assert_eq!(we["AlternateLocations"], serde_json::json!(["North Europe"]));
    // nometadata (and the documented misspelling) drop the annotations
    for level in ["nometadata", "nometatadata"] {
        let accept = format!("application/json;odata={level}");
        let r = raw(&emu, true, "GET", "/locations", &[v, ("accept", &accept)], None);
        assert_eq!(r.status, 200);
        let j = r.json();
        assert!(
            j.get("odata.metadata").is_none() && j["value"][0].get("odata.id").is_none(),
            "{j}"
        );
    }
    // an origin returns itself and its alternates; an unknown one returns nothing
    let r = raw(
        &emu,
        true,
        "GET",
        "/locations?originlocation=West%20Europe",
        &[v],
        None,
    )
    .json();
    let names: Vec<&str> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["West Europe", "North Europe"]);
    assert_eq!(r["odata.count"], "2");
    let r = raw(
        &emu,
        true,
        "GET",
        "/locations?originlocation=Atlantis",
        &[v],
        None,
    )
    .json();
    assert_eq!(
        (r["odata.count"].as_str(), r["value"].as_array().unwrap().len()),
        (Some("0"), 0)
    );
    // HEAD: the headers without the body
    let r = raw(&emu, true, "HEAD", "/locations", &[v], None);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn a_certificate_that_is_not_registered_is_refused() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    // a management certificate of another emulator: valid, but not registered here
    let other_dir = init_dir();
    let other = Emulator::start(other_dir.path());
    let stranger = other.identity();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(emu.dir.join("ca.pem")).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(stranger.pem()).unwrap())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let r = client
            .get(format!("{}/locations", emu.base()))
            .header("x-ms-version", "2014-11-01")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["odata.error"]["azure.values"][0]["ExtendedCode"],
        "ForbiddenError"
    );
    assert!(v["odata.error"]["message"]["value"]
        .as_str()
        .unwrap()
        .contains(stranger.thumbprint()));
    // and our client reports it as a typed 403
    let mut opts = other.client_options();
    opts.service_management_url = emu.url.clone();
    opts.management_ca_pem = Some(std::fs::read(emu.dir.join("ca.pem")).unwrap());
    let e = seedship_shared::api::BlockingApiClient::new(opts)
        .unwrap()
        .list_locations(None)
        .unwrap_err();
    assert_eq!(
        (e.status(), e.extended_code()),
        (Some(403), Some("ForbiddenError"))
    );
    assert!(e.to_string().contains("List Locations failed: HTTP 403"), "{e}");
}
