//! `seedship-emulator init`: a CA, a server certificate for 127.0.0.1 and localhost signed by it, a
//! subscription with a management certificate (a client certificate signed by the CA, as PKCS#12 with an
//! empty password), the publish-settings file (schema 2.0) pointing at the emulator, the locations table, and
//! `emulator.json`.

use crate::config::{
    write_file, EmulatorConfig, EmulatorDir, EmulatorError, StorageAccountConfig, SubscriptionConfig,
};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use seedship_shared::api::identity::thumbprint;
use seedship_shared::api::Location;
use std::path::PathBuf;

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// Defaults to a random GUID.
    pub subscription_id: Option<String>,
    pub subscription_name: String,
    pub storage_account: Option<StorageAccountConfig>,
    /// A fixed ServiceManagementUrl (e.g. `https://127.0.0.1:8443`); without it `serve` fills in its address.
    pub url: Option<String>,
    pub listen_port: Option<u16>,
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub subscription_id: String,
    pub thumbprint: String,
    pub publish_settings: PathBuf,
    pub ca_cert: PathBuf,
    /// `entra-app.json`: the Entra ID application registration for Resource Manager sign-in.
    pub entra_app: PathBuf,
    pub entra_client_id: String,
    pub entra_tenant: String,
}

fn cert_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Certificate(e.to_string())
}

/// Runs `init`.
pub fn init(opts: &InitOptions) -> Result<InitReport, EmulatorError> {
    let dir = EmulatorDir::new(&opts.dir);
    crate::config::make_private_dir(&dir.dir)?;
    if dir.config().exists() {
        return Err(EmulatorError::AlreadyInitialised { dir: dir.dir.clone() });
    }
    let (ca_params, ca_key) = make_ca()?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(cert_err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "seedship emulator");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(cert_err)?;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(cert_err)?;

    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    client
        .distinguished_name
        .push(DnType::CommonName, "seedship management certificate");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().map_err(cert_err)?;
    let client_cert = client.signed_by(&client_key, &issuer).map_err(cert_err)?;
    let pfx = pkcs12(&client_key.serialize_der(), client_cert.der(), ca_cert.der())?;

    let subscription_id = match &opts.subscription_id {
        Some(id) => id.clone(),
        None => crate::config::random_guid()?,
    };
    let thumb = thumbprint(client_cert.der());
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| format!("https://127.0.0.1:{}", opts.listen_port.unwrap_or(8443)));
    let (entra, entra_app) = crate::entra::register::create_registration(&dir, &subscription_id, &url)?;
    let config = EmulatorConfig {
        subscriptions: vec![SubscriptionConfig {
            id: subscription_id.clone(),
            name: opts.subscription_name.clone(),
            management_certificates: vec![thumb.clone()],
        }],
        storage_account: opts.storage_account.clone(),
        public_url: opts.url.clone(),
        listen_port: opts.listen_port,
        entra: Some(entra),
    };
    write_file(&dir.ca_cert(), ca_cert.pem().as_bytes(), false)?;
    write_file(&dir.ca_key(), ca_key.serialize_pem().as_bytes(), true)?;
    write_file(&dir.server_cert(), server_cert.pem().as_bytes(), false)?;
    write_file(&dir.server_key(), server_key.serialize_pem().as_bytes(), true)?;
    write_file(&dir.management_pfx(), &pfx, true)?;
    let locations = serde_json::to_vec_pretty(&default_locations()).map_err(cert_err)?;
    write_file(&dir.locations(), &locations, false)?;
    write_publish_settings(&dir, &config, &url)?;
    let mut token = [0u8; 32];
    seedship_shared::crypto::random_bytes(&mut token).map_err(cert_err)?;
    write_file(&dir.operator_token(), hex::encode(token).as_bytes(), true)?;
    let json = serde_json::to_vec_pretty(&config).map_err(cert_err)?;
    write_file(&dir.config(), &json, true)?;
    Ok(InitReport {
        subscription_id,
        thumbprint: thumb,
        publish_settings: dir.publish_settings(),
        ca_cert: dir.ca_cert(),
        entra_app: dir.entra_app(),
        entra_client_id: entra_app.client_id,
        entra_tenant: entra_app.tenant,
    })
}

fn make_ca() -> Result<(CertificateParams, KeyPair), EmulatorError> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "seedship emulator CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok((ca, KeyPair::generate().map_err(cert_err)?))
}

/// PKCS#12 with an empty password: the PKCS#8 key, the client certificate and the CA certificate.
fn pkcs12(key_pkcs8: &[u8], cert: &[u8], ca: &[u8]) -> Result<Vec<u8>, EmulatorError> {
    let chain = [cert, ca]
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    use sha1::Digest;
    let local_key_id = sha1::Sha1::digest(cert);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "management",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key_pkcs8,
            local_key_id,
            chain,
        )),
    );
    store.writer("").write().map_err(cert_err)
}

/// Writes the publish-settings file (schema 2.0) for every subscription, with `url` as ServiceManagementUrl.
pub fn write_publish_settings(
    dir: &EmulatorDir,
    config: &EmulatorConfig,
    url: &str,
) -> Result<(), EmulatorError> {
    let pfx = std::fs::read(dir.management_pfx()).map_err(crate::config::io(&dir.management_pfx()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pfx);
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PublishData>\n  <PublishProfile SchemaVersion=\"2.0\" PublishMethod=\"AzureServiceManagementAPI\">\n",
    );
    for s in &config.subscriptions {
        xml.push_str(&format!(
            "    <Subscription ServiceManagementUrl=\"{}\" Id=\"{}\" Name=\"{}\" ManagementCertificate=\"{b64}\" />\n",
            xml_escape(url),
            xml_escape(&s.id),
            xml_escape(&s.name)
        ));
    }
    xml.push_str("  </PublishProfile>\n</PublishData>\n");
    write_file(&dir.publish_settings(), xml.as_bytes(), true)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn location(
    name: &str,
    street: &str,
    city: &str,
    state: &str,
    postal: &str,
    country: &str,
    alternates: &[&str],
) -> Location {
    Location {
        name: name.into(),
        recipient_name: "Windows Azure Import Export Service".into(),
        street_address1: street.into(),
        city: city.into(),
        state_or_province: state.into(),
        postal_code: postal.into(),
        country_or_region: country.into(),
        supported_carriers: vec!["FedEx".into()],
        alternate_locations: Some(alternates.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// The default locations table: West US as in seed 001's sample, two more open locations and one closed
/// location (West Europe) whose AlternateLocations name North Europe only.
pub fn default_locations() -> Vec<Location> {
    vec![
        location(
            "West US",
            "2045 Lafayette Street",
            "Santa Clara",
            "CA",
            "95050",
            "USA",
            &["West US"],
        ),
        location(
            "East US",
            "1 Emulator Way",
            "Boydton",
            "VA",
            "23917",
            "USA",
            &["East US"],
        ),
        location(
            "North Europe",
            "1 Emulator Road",
            "Dublin",
            "Dublin",
            "D24",
            "Ireland",
            &["North Europe"],
        ),
        location(
            "West Europe",
            "1 Emulatorweg",
            "Amsterdam",
            "NH",
            "1101",
            "Netherlands",
            &["North Europe"],
        ),
    ]
}
