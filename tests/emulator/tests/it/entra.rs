//! Entra ID sign-in against the emulator: seedship-shared's credentials (certificate, secret, managed
//! identity, handed-over token) get tokens from the emulator's endpoints; the tokens' signatures verify
//! against the emulator's signing certificate; the refusals (expired or wrongly signed assertion, unknown
//! client, wrong secret, wrong audience, missing role) name what is wrong.

use super::harness::{self, Emulator};
use rustls::pki_types::pem::PemObject as _;
use seedship_emulator::entra::{authorize, validate_bearer, AuthError, Authority, EntraAppFile};
use seedship_emulator::{EmulatorConfig, EmulatorDir};
use seedship_shared::entra::jwt::{self, numeric_claim, string_claim};
use seedship_shared::entra::{
    ClientCertificate, CredentialChoice, EntraError, EntraOptions, HandedToken, TokenSource, STORAGE_SCOPE,
};
use seedship_testkit::write_private;
use std::path::Path;
use std::time::SystemTime;

fn app_file(emu: &Emulator) -> EntraAppFile {
    serde_json::from_slice(&std::fs::read(emu.dir.join("entra-app.json")).unwrap()).unwrap()
}

/// Options for the registered application with `credential`, pointed at the emulator.
pub fn options(emu: &Emulator, credential: CredentialChoice) -> EntraOptions {
    let app = app_file(emu);
    EntraOptions {
        tenant: Some(app.tenant),
        client_id: Some(app.client_id),
        authority: app.authority,
        management_endpoint: app.management_endpoint,
        management_audience: Some(app.management_audience),
        credential,
        ca_pem: Some(std::fs::read(app.ca_certificate).unwrap()),
    }
}

pub fn certificate_choice(emu: &Emulator) -> CredentialChoice {
    let app = app_file(emu);
    CredentialChoice::Certificate {
        cert: app.certificate,
        key: Some(app.private_key),
    }
}

fn authority(dir: &Path) -> Authority {
    let d = EmulatorDir::new(dir);
    Authority::load(&d, EmulatorConfig::load(&d).unwrap().entra.unwrap()).unwrap()
}

fn now() -> i64 {
    jwt::unix_seconds(SystemTime::now())
}

/// Verifies an RS256 JWT against a PEM certificate with webpki, independently of the emulator's code.
fn signature_verifies(token: &str, cert_pem: &Path) -> bool {
    let cert = rustls::pki_types::CertificateDer::from_pem_file(cert_pem).unwrap();
    let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = jwt::b64url_decode(sig).unwrap();
    ee.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
        .is_ok()
}

#[test]
fn init_writes_the_registration_with_private_files() {
    let dir = harness::init_dir();
    let app: EntraAppFile =
        serde_json::from_slice(&std::fs::read(dir.path().join("entra-app.json")).unwrap()).unwrap();
    assert_eq!(app.subscription, harness::SEED_SUB);
    assert!(!app.tenant.is_empty() && !app.client_id.is_empty() && !app.resource_group.is_empty());
    assert!(
        app.authority.starts_with("https://127.0.0.1:"),
        "{}",
        app.authority
    );
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "entra-app.json",
        "entra-app-key.pem",
        "entra-app-secret",
        "entra-signing-key.pem",
    ] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert!(std::fs::read_to_string(&app.certificate)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(std::fs::read_to_string(&app.private_key)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    let secret = std::fs::read_to_string(&app.client_secret_file).unwrap();
    assert_eq!(secret.len(), 40);
    // the secret is kept only as a digest
    let config = std::fs::read_to_string(dir.path().join("emulator.json")).unwrap();
    assert!(
        !config.contains(&secret),
        "emulator.json must not hold the client secret"
    );
}

#[test]
fn certificate_credential_gets_a_signed_cached_token() {
    let dir = harness::init_dir();
    let emu = Emulator::start(dir.path());
    let app = app_file(&emu);
    let source = options(&emu, certificate_choice(&emu)).token_source().unwrap();
    let t = source.token(STORAGE_SCOPE).unwrap();
    assert!(
        signature_verifies(&t.token, &emu.dir.join("entra-signing-cert.pem")),
        "RS256 signature must verify"
    );
    let claims = jwt::decode(&t.token).unwrap().claims;
    assert_eq!(string_claim(&claims, "aud"), Some("https://storage.azure.com"));
    assert_eq!(
        string_claim(&claims, "iss"),
        Some(format!("https://sts.windows.net/{}/", app.tenant).as_str())
    );
    assert_eq!(string_claim(&claims, "appid"), Some(app.client_id.as_str()));
    let exp = numeric_claim(&claims, "exp").unwrap();
    assert!((exp - now() - 3599).abs() < 120, "exp {exp}");
    assert_eq!(jwt::unix_seconds(t.expires_at), jwt::unix_seconds(t.expires_at));
    // cached: the same token again, not a new request
    let again = source.token(STORAGE_SCOPE).unwrap();
    assert_eq!(again.token.as_str(), t.token.as_str());
    // another scope: another token, for that audience, accepted by validate_bearer
    let mgmt = source
        .token(&options(&emu, certificate_choice(&emu)).management_scope())
        .unwrap();
    let auth = authority(&emu.dir);
    let c = validate_bearer(
        &auth,
        Some(&format!("Bearer {}", mgmt.token.as_str())),
        "https://management.azure.com/",
        now(),
    )
    .unwrap();
    assert_eq!(c.app_id, app.client_id);
    authorize(&auth, &c, &["Contributor", "Owner"]).unwrap();
    // with the key in the same file as the certificate
    let both = emu.dir.join("both.pem");
    let mut pem = std::fs::read(&app.certificate).unwrap();
    pem.extend(std::fs::read(&app.private_key).unwrap());
    write_private(&both, &pem);
    let one_file = CredentialChoice::Certificate {
        cert: both,
        key: None,
    };
    assert!(options(&emu, one_file)
        .token_source()
        .unwrap()
        .token(STORAGE_SCOPE)
        .is_ok());
}

#[test]
fn secret_credential_and_its_refusals() {
    let dir = harness::init_dir();
    let emu = Emulator::start(dir.path());
    let app = app_file(&emu);
    let ok = options(&emu, CredentialChoice::SecretFile(app.client_secret_file.clone()));
    assert!(ok.token_source().unwrap().token(STORAGE_SCOPE).is_ok());

    let wrong = options(
        &emu,
        CredentialChoice::Secret(zeroize::Zeroizing::new("not-the-secret".into())),
    );
    let e = wrong.token_source().unwrap().token(STORAGE_SCOPE).unwrap_err();
    assert!(
        matches!(e, EntraError::Refused { status: 401, ref code, .. } if code == "invalid_client"),
        "{e}"
    );
    let m = e.to_string();
    assert!(
        m.contains("AADSTS7000215") && m.contains(&app.client_id) && !m.contains("not-the-secret"),
        "{m}"
    );

    let mut unknown = options(&emu, CredentialChoice::SecretFile(app.client_secret_file.clone()));
    unknown.client_id = Some("00000000-0000-0000-0000-000000000001".into());
    let m = unknown
        .token_source()
        .unwrap()
        .token(STORAGE_SCOPE)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("AADSTS700016")
            && m.contains("00000000-0000-0000-0000-000000000001")
            && m.contains("not found"),
        "{m}"
    );

    let mut tenant = options(&emu, CredentialChoice::SecretFile(app.client_secret_file.clone()));
    tenant.tenant = Some("other.onmicrosoft.com".into());
    let m = tenant
        .token_source()
        .unwrap()
        .token(STORAGE_SCOPE)
        .unwrap_err()
        .to_string();
    assert!(m.contains("Tenant 'other.onmicrosoft.com' not found"), "{m}");

    let m = ok
        .token_source()
        .unwrap()
        .token("https://storage.azure.com/user_impersonation")
        .unwrap_err()
        .to_string();
    assert!(m.contains("invalid_scope") && m.contains("/.default"), "{m}");

    // a secret file others can read is refused before anything is sent
    let loose = emu.dir.join("loose-secret");
    std::fs::write(&loose, std::fs::read(&app.client_secret_file).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let m = options(&emu, CredentialChoice::SecretFile(loose.clone()))
        .token_source()
        .unwrap_err()
        .to_string();
    assert!(m.contains("readable by others") && m.contains("chmod 600"), "{m}");
}

/// Posts a client assertion to the token endpoint and returns the status and answer.
fn post_assertion(emu: &Emulator, assertion: &str) -> harness::Raw {
    let app = app_file(emu);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &app.client_id)
        .append_pair("scope", STORAGE_SCOPE)
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", assertion)
        .finish();
    harness::raw_url(
        emu,
        false,
        "POST",
        &format!("{}/{}/oauth2/v2.0/token", emu.url, app.tenant),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
}

fn description(r: &harness::Raw) -> String {
    r.json()["error_description"].as_str().unwrap_or("").to_owned()
}

#[test]
fn expired_and_wrongly_signed_assertions_are_refused() {
    let dir = harness::init_dir();
    let emu = Emulator::start(dir.path());
    let other = harness::init_dir();
    let app = app_file(&emu);
    let endpoint = format!("{}/{}/oauth2/v2.0/token", emu.url, app.tenant);
    let cert = ClientCertificate::load(&app.certificate, Some(&app.private_key)).unwrap();

    let good = cert
        .assertion(&app.client_id, &endpoint, SystemTime::now())
        .unwrap();
    let r = post_assertion(&emu, &good);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["access_token"].as_str().is_some());

    let old = SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    let r = post_assertion(&emu, &cert.assertion(&app.client_id, &endpoint, old).unwrap());
    assert_eq!(r.status, 401);
    assert!(
        description(&r).contains("AADSTS700024") && description(&r).contains("valid time range"),
        "{}",
        description(&r)
    );

    // the registered certificate's thumbprint, but signed with another key
    let other_key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(other.path().join("entra-app-key.pem")).unwrap();
    let forged = ClientCertificate::from_der(cert.der(), other_key.secret_der(), "forged").unwrap();
    let r = post_assertion(
        &emu,
        &forged
            .assertion(&app.client_id, &endpoint, SystemTime::now())
            .unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(
        description(&r).contains("invalid signature"),
        "{}",
        description(&r)
    );

    // a certificate the application does not have
    let other_app: EntraAppFile =
        serde_json::from_slice(&std::fs::read(other.path().join("entra-app.json")).unwrap()).unwrap();
    let stranger = ClientCertificate::load(&other_app.certificate, Some(&other_app.private_key)).unwrap();
    let r = post_assertion(
        &emu,
        &stranger
            .assertion(&app.client_id, &endpoint, SystemTime::now())
            .unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(description(&r).contains("not registered"), "{}", description(&r));

    // an assertion for another token endpoint
    let r = post_assertion(
        &emu,
        &cert
            .assertion(
                &app.client_id,
                "https://login.microsoftonline.com/x/oauth2/v2.0/token",
                SystemTime::now(),
            )
            .unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(description(&r).contains("audience"), "{}", description(&r));
}

#[test]
fn bearer_validation_refusals() {
    let (dir, other_dir) = (harness::init_dir(), harness::init_dir());
    let emu = Emulator::start(dir.path());
    let other = Emulator::start(other_dir.path());
    let auth = authority(&emu.dir);
    let mine = options(&emu, certificate_choice(&emu)).token_source().unwrap();
    let mgmt_scope = format!("{}/.default", emu.url);
    let token = format!("Bearer {}", mine.token(&mgmt_scope).unwrap().token.as_str());

    assert_eq!(
        validate_bearer(&auth, None, &emu.url, now()),
        Err(AuthError::Missing)
    );
    let e = validate_bearer(&auth, Some(&token), "https://management.azure.com/", now()).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (401, "InvalidAuthenticationTokenAudience")
    );
    assert!(e.to_string().contains("https://management.azure.com/"), "{e}");
    let e = validate_bearer(&auth, Some(&token), &emu.url, now() + 7200).unwrap_err();
    assert_eq!(e.code(), "ExpiredAuthenticationToken");
    // a token of another emulator (another signing key) for this audience
    let theirs = options(&other, certificate_choice(&other))
        .token_source()
        .unwrap();
    let foreign = format!("Bearer {}", theirs.token(&mgmt_scope).unwrap().token.as_str());
    assert_eq!(
        validate_bearer(&auth, Some(&foreign), &emu.url, now()),
        Err(AuthError::BadSignature)
    );
    let body: serde_json::Value = serde_json::from_slice(&AuthError::BadSignature.arm_body()).unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    // the role assignment removed: the token is still good, the action is not allowed
    let d = EmulatorDir::new(&emu.dir);
    let mut config = EmulatorConfig::load(&d).unwrap().entra.unwrap();
    config.applications[0].roles = vec!["Reader".into()];
    let reader = Authority::load(&d, config).unwrap();
    let claims = validate_bearer(&reader, Some(&token), &emu.url, now()).unwrap();
    let e = authorize(&reader, &claims, &["Contributor", "Owner"]).unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "AuthorizationFailed"));
    assert!(
        e.to_string().contains(&claims.app_id) && e.to_string().contains("Contributor or Owner"),
        "{e}"
    );
}

#[test]
fn managed_identity_and_handed_over_token() {
    let dir = harness::init_dir();
    let emu = Emulator::start(dir.path());
    let app = app_file(&emu);
    let mi = options(
        &emu,
        CredentialChoice::ManagedIdentity {
            endpoint: emu.url.clone(),
            client_id: None,
        },
    );
    let mut mi = mi;
    mi.client_id = None;
    let t = mi.token_source().unwrap().token(STORAGE_SCOPE).unwrap();
    let claims = jwt::decode(&t.token).unwrap().claims;
    assert_eq!(
        string_claim(&claims, "appid"),
        Some(app.managed_identity_client_id.as_str())
    );
    assert!(signature_verifies(
        &t.token,
        &emu.dir.join("entra-signing-cert.pem")
    ));
    let mut wrong = mi.clone();
    wrong.client_id = Some("11111111-1111-1111-1111-111111111111".into());
    let m = wrong
        .token_source()
        .unwrap()
        .token(STORAGE_SCOPE)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("Identity not found") && m.contains("11111111-1111-1111-1111-111111111111"),
        "{m}"
    );

    // `az account get-access-token` output handed over in a file
    let json = serde_json::json!({
        "accessToken": t.token.as_str(),
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": jwt::unix_seconds(t.expires_at),
        "subscription": app.subscription,
        "tenant": app.tenant,
        "tokenType": "Bearer",
    });
    let file = emu.dir.join("token.json");
    write_private(&file, json.to_string().as_bytes());
    let handed = HandedToken::load(&file).unwrap();
    assert_eq!(
        handed.token(STORAGE_SCOPE).unwrap().token.as_str(),
        t.token.as_str()
    );
    let m = handed
        .token(&format!("{}/.default", emu.url))
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("issued for https://storage.azure.com") && m.contains("az account get-access-token"),
        "{m}"
    );
}

/// Always hands out one fixed token, whatever the scope (to show that Azurite itself checks the audience).
#[derive(Debug)]
struct FixedToken(seedship_shared::entra::AccessToken);

impl TokenSource for FixedToken {
    fn token(&self, _scope: &str) -> Result<seedship_shared::entra::AccessToken, EntraError> {
        Ok(self.0.clone())
    }
}

#[test]
fn vault_with_bearer_tokens_against_azurite_in_oauth_mode() {
    use seedship_shared::blob::{AzureOptions, AzureStore, BlobStore, Credential};
    use seedship_testkit::{Azurite, AZURITE_ACCOUNT};
    use sha2::Digest as _;
    use std::sync::Arc;
    let dir = harness::init_dir();
    let emu = Emulator::start(dir.path());
    let app = app_file(&emu);
    // Azurite over HTTPS with the emulator's server certificate (127.0.0.1, signed by the emulator's CA)
    let azurite = Azurite::start_oauth(&emu.dir.join("server.pem"), &emu.dir.join("server-key.pem"));
    let ca = std::fs::read(emu.dir.join("ca.pem")).unwrap();
    let store_with = |credential: Credential| {
        let mut o = AzureOptions::new(&azurite.endpoint(), AZURITE_ACCOUNT, "vault", credential);
        o.extra_ca_pem = Some(ca.clone());
        AzureStore::new(o).unwrap()
    };
    let source = options(&emu, certificate_choice(&emu)).token_source().unwrap();
    let store = store_with(Credential::Bearer(source.clone()));
    store.create_container().unwrap();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let meta = [("kind".to_string(), "pack".to_string())].into_iter().collect();
    store.create("data/0001", data.len() as u64, &meta).unwrap();
    store.write_pages("data/0001", 0, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    store.read_at("data/0001", 0, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(store.list("data/").unwrap()[0].metadata, meta);
    store.copy_blob("data/0001", "data/0002").unwrap();
    store.delete("data/0002").unwrap();

    // a token for another audience: Azurite refuses it, and the error says what to check
    let mgmt = source.token("https://management.azure.com/.default").unwrap();
    let wrong = store_with(Credential::Bearer(Arc::new(FixedToken(mgmt))));
    let e = wrong.read_at("data/0001", 0, &mut back[..512]).unwrap_err();
    assert!(matches!(e.http_status(), Some(401 | 403)), "{e}");
    // a failing sign-in is reported as such, naming the client and the fix, and nothing is sent
    let mut bad = options(
        &emu,
        CredentialChoice::Secret(zeroize::Zeroizing::new("wrong".into())),
    );
    bad.management_audience = None;
    let no_login = store_with(Credential::Bearer(bad.token_source().unwrap()));
    let e = no_login
        .read_at("data/0001", 0, &mut back[..512])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("signing in for a storage token failed") && e.contains("AADSTS7000215"),
        "{e}"
    );
    // bearer tokens are refused over plain HTTP before anything is sent
    let plain = AzureOptions::new(
        "http://127.0.0.1:1/devstoreaccount1",
        AZURITE_ACCOUNT,
        "vault",
        Credential::Bearer(source),
    );
    assert!(AzureStore::new(plain)
        .unwrap_err()
        .to_string()
        .contains("HTTPS only"));

    // the Azure SDK for Python: azure-identity's certificate credential at the emulator, azure-storage-blob reading
    let combined = emu.dir.join("app-combined.pem");
    let mut pem = std::fs::read(&app.certificate).unwrap();
    pem.extend(std::fs::read(&app.private_key).unwrap());
    write_private(&combined, &pem);
    let ca_path = emu.dir.join("ca.pem");
    let out = seedship_testkit::run_python(
        "entra_blob.py",
        &[
            &app.authority,
            &app.tenant,
            &app.client_id,
            combined.to_str().unwrap(),
            emu.dir.join("entra-signing-cert.pem").to_str().unwrap(),
            &azurite.endpoint(),
            "vault",
            "data/0001",
        ],
        &[("REQUESTS_CA_BUNDLE", ca_path.to_str().unwrap())],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["signature_ok"], true, "{v}");
    assert_eq!(v["aud"], "https://storage.azure.com", "{v}");
    assert_eq!(
        v["iss"],
        format!("https://sts.windows.net/{}/", app.tenant),
        "{v}"
    );
    assert_eq!(v["appid"], app.client_id.as_str());
    assert_eq!(v["len"], data.len());
    assert_eq!(v["sha256"], hex::encode(sha2::Sha256::digest(&data)));
}
