//! Azure publish-settings files (`.publishsettings`): the subscriptions they hold, each with its
//! Service Management URL and management certificate.
//!
//! Two schemas exist (docs/importexport-reference.md section 5):
//! - 2.0: `<PublishProfile SchemaVersion="2.0">` holds `<Subscription ServiceManagementUrl Id Name
//!   ManagementCertificate/>` elements;
//! - 1 (older): `ManagementCertificate` and `Url` are attributes of `<PublishProfile>` and each
//!   `<Subscription>` has only `Id` and `Name`.
//!
//! The certificate is looked up on the subscription first, then on its profile. It is Base64 of a PKCS#12
//! file with an empty password, kept here as raw bytes; turning it into a TLS identity is the API client's
//! business. Subscriptions are chosen by id, case-insensitively.

use base64::Engine;
use quick_xml::events::{BytesStart, Event};
use std::path::{Path, PathBuf};

/// The default Service Management endpoint, used when a schema-1 profile names none.
pub const DEFAULT_SERVICE_MANAGEMENT_URL: &str = "https://management.core.windows.net";

/// One subscription of a publish-settings file.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    /// Without a trailing `/`.
    pub service_management_url: String,
    /// The PKCS#12 (PFX) bytes of the management certificate, empty password.
    pub management_certificate: Vec<u8>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("service_management_url", &self.service_management_url)
            .field(
                "management_certificate",
                &format_args!("<{} bytes>", self.management_certificate.len()),
            )
            .finish()
    }
}

/// A parsed publish-settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// Where it was read from, for messages (empty when parsed from a string).
    pub path: PathBuf,
    pub subscriptions: Vec<Subscription>,
}

/// Errors reading a publish-settings file.
#[derive(Debug, thiserror::Error)]
pub enum PublishSettingsError {
    #[error("cannot read publish-settings file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("publish-settings file {path} is not valid XML: {message}")]
    Xml { path: PathBuf, message: String },
    #[error("publish-settings file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "publish-settings file {path} has no subscription {id} (it has: {available}); \
         download the settings of that subscription or check the id"
    )]
    NoSuchSubscription {
        path: PathBuf,
        id: String,
        available: String,
    },
}

impl PublishSettings {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, PublishSettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| PublishSettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_at(&text, path)
    }

    /// Parses the text of a file.
    pub fn parse(xml: &str) -> Result<Self, PublishSettingsError> {
        Self::parse_at(xml, Path::new(""))
    }

    fn parse_at(xml: &str, path: &Path) -> Result<Self, PublishSettingsError> {
        let invalid = |message: String| PublishSettingsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut profile: Option<ProfileAttrs> = None;
        let mut saw_root = false;
        let mut subscriptions = Vec::new();
        loop {
            let event = reader.read_event().map_err(|e| PublishSettingsError::Xml {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            match event {
                Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                    b"PublishData" => saw_root = true,
                    b"PublishProfile" => profile = Some(ProfileAttrs::read(&e, path)?),
                    b"Subscription" => {
                        let p = profile.as_ref().ok_or_else(|| {
                            invalid("a <Subscription> element is outside any <PublishProfile>".into())
                        })?;
                        subscriptions.push(read_subscription(&e, p, path)?);
                    }
                    _ => {}
                },
                Event::End(e) if e.local_name().as_ref() == b"PublishProfile" => profile = None,
                Event::Eof => break,
                _ => {}
            }
        }
        if !saw_root {
            return Err(invalid("it has no <PublishData> element".into()));
        }
        if subscriptions.is_empty() {
            return Err(invalid("it lists no subscription".into()));
        }
        Ok(PublishSettings {
            path: path.to_owned(),
            subscriptions,
        })
    }

    /// The subscription with this id (case-insensitive).
    pub fn subscription(&self, id: &str) -> Result<&Subscription, PublishSettingsError> {
        self.subscriptions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| PublishSettingsError::NoSuchSubscription {
                path: self.path.clone(),
                id: id.to_owned(),
                available: self
                    .subscriptions
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// What a `<PublishProfile>` passes down to its subscriptions.
struct ProfileAttrs {
    url: Option<String>,
    certificate: Option<String>,
}

impl ProfileAttrs {
    fn read(e: &BytesStart<'_>, path: &Path) -> Result<Self, PublishSettingsError> {
        Ok(ProfileAttrs {
            url: attr(e, b"Url", path)?,
            certificate: attr(e, b"ManagementCertificate", path)?,
        })
    }
}

fn read_subscription(
    e: &BytesStart<'_>,
    profile: &ProfileAttrs,
    path: &Path,
) -> Result<Subscription, PublishSettingsError> {
    let invalid = |message: String| PublishSettingsError::Invalid {
        path: path.to_owned(),
        message,
    };
    let id = attr(e, b"Id", path)?.ok_or_else(|| invalid("a <Subscription> has no Id".into()))?;
    let name = attr(e, b"Name", path)?.unwrap_or_default();
    let url = attr(e, b"ServiceManagementUrl", path)?
        .or_else(|| profile.url.clone())
        .unwrap_or_else(|| DEFAULT_SERVICE_MANAGEMENT_URL.to_owned());
    let certificate = attr(e, b"ManagementCertificate", path)?
        .or_else(|| profile.certificate.clone())
        .ok_or_else(|| invalid(format!("subscription {id} has no ManagementCertificate")))?;
    let compact: String = certificate.chars().filter(|c| !c.is_whitespace()).collect();
    let management_certificate = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| {
            invalid(format!(
                "the ManagementCertificate of subscription {id} is not Base64: {e}"
            ))
        })?;
    if management_certificate.is_empty() {
        return Err(invalid(format!(
            "the ManagementCertificate of subscription {id} is empty"
        )));
    }
    Ok(Subscription {
        id,
        name,
        service_management_url: url.trim_end_matches('/').to_owned(),
        management_certificate,
    })
}

fn attr(e: &BytesStart<'_>, name: &[u8], path: &Path) -> Result<Option<String>, PublishSettingsError> {
    for a in e.attributes() {
        let a = a.map_err(|err| PublishSettingsError::Xml {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        if a.key.local_name().as_ref() == name {
            let v = a.unescape_value().map_err(|err| PublishSettingsError::Xml {
                path: path.to_owned(),
                message: err.to_string(),
            })?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<PublishData>
  <PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
    <Subscription ServiceManagementUrl="https://127.0.0.1:8443/" Id="11111111-2222-3333-4444-555555555555"
                  Name="Pay-As-You-Go" ManagementCertificate="AQID" />
    <Subscription ServiceManagementUrl="https://management.core.windows.net" Id="aaaa" Name="Other"
                  ManagementCertificate="BAUG" />
  </PublishProfile>
</PublishData>"#;

    const V1: &str = r#"<PublishData>
  <PublishProfile PublishMethod="AzureServiceManagementAPI" Url="https://management.core.windows.net/"
                  ManagementCertificate="AQ ID">
    <Subscription Id="BBBB" Name="Old" />
  </PublishProfile>
</PublishData>"#;

    #[test]
    fn schema_2_certificate_on_subscription() {
        let ps = PublishSettings::parse(V2).unwrap();
        let s = ps.subscription("11111111-2222-3333-4444-555555555555").unwrap();
        assert_eq!(s.service_management_url, "https://127.0.0.1:8443");
        assert_eq!(s.management_certificate, vec![1, 2, 3]);
        assert_eq!(
            ps.subscription("AAAA").unwrap().management_certificate,
            vec![4, 5, 6]
        );
    }

    #[test]
    fn schema_1_certificate_on_profile() {
        let ps = PublishSettings::parse(V1).unwrap();
        let s = ps.subscription("bbbb").unwrap();
        assert_eq!(s.service_management_url, "https://management.core.windows.net");
        assert_eq!(s.management_certificate, vec![1, 2, 3]);
        assert_eq!(s.name, "Old");
    }

    #[test]
    fn unknown_subscription_lists_what_exists() {
        let e = PublishSettings::parse(V2)
            .unwrap()
            .subscription("nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no subscription nope") && e.contains("aaaa"), "{e}");
    }

    #[test]
    fn refusals_are_named() {
        for (xml, want) in [
            ("<PublishData></PublishData>", "no subscription"),
            ("<Other/>", "no <PublishData>"),
            (
                r#"<PublishData><PublishProfile><Subscription Id="x"/></PublishProfile></PublishData>"#,
                "no ManagementCertificate",
            ),
            (
                r#"<PublishData><PublishProfile><Subscription Id="x" ManagementCertificate="!!"/></PublishProfile></PublishData>"#,
                "not Base64",
            ),
            ("<PublishData><PublishProfile", "not valid XML"),
        ] {
            let e = PublishSettings::parse(xml).unwrap_err().to_string();
            assert!(e.contains(want), "{xml}: {e}");
        }
    }

    #[test]
    fn debug_hides_the_certificate() {
        let ps = PublishSettings::parse(V2).unwrap();
        let d = format!("{:?}", ps.subscriptions[0]);
        assert!(d.contains("<3 bytes>") && !d.contains("[1, 2, 3]"), "{d}");
    }
}
