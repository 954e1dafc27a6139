//! A job's `ContainerSas` (`<container>?<service SAS token>`), checked the way the storage service checks it
//! before the data centre writes with it: the signature verifies with the account's key (the string-to-sign
//! of the token's `sv`: 2020-12-06 and later, 2018-11-09, 2015-04-05, and the 2014-02-14 layout before
//! that), it is a container SAS (`sr=c`) for the container it names, it grants write (`w`), it has started
//! and has not expired. A token naming a stored access policy (`si`) cannot be checked: the emulator keeps no
//! policies. [`SasContainers`] then writes with the token, into that one container: a manifest naming another
//! container gets `BlobRequestForbidden` for those blobs in the copy log, as the service answers.

use super::{ContainerStores, DEFAULT_STATES_PATH};
use base64::Engine;
use seedship_shared::blob::{AzureOptions, AzureStore, BlobError, BlobStore, Credential, RetryStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Why a job's `ContainerSas` cannot be written with (never shows the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasRefusal {
    #[error("is not `<container>?<SAS token>`")]
    Shape,
    #[error("has no `{0}` parameter")]
    Missing(&'static str),
    #[error("is a SAS for {0:?}, not for a container (sr=c)")]
    NotContainer(String),
    #[error("names a stored access policy (si); the emulator keeps none, give a SAS with its own permissions and expiry")]
    StoredPolicy,
    #[error("does not grant write (sp={0}); the import needs at least w")]
    NoWrite(String),
    #[error("has a start or expiry time {0:?} that is not ISO 8601 UTC")]
    BadTime(String),
    #[error("expired at {0}")]
    Expired(String),
    #[error("is not valid before {0}")]
    NotYetValid(String),
    #[error("is not signed with the key of storage account {0} (or not for container {1})")]
    BadSignature(String, String),
}

/// A checked container SAS: the container it is for and the token to write with.
#[derive(Clone)]
pub struct ContainerSas {
    pub container: String,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for ContainerSas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSas")
            .field("container", &self.container)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The container a `ContainerSas` value names (the part before `?`), for job information.
pub fn sas_container(sas: &str) -> Option<&str> {
    sas.split_once('?')
        .map(|(c, _)| c.trim_matches('/'))
        .filter(|c| !c.is_empty())
}

/// Checks `sas` (`<container>?<token>`) against storage account `account` with key `key` (base64) at Unix
/// time `now`.
pub fn check(sas: &str, account: &str, key: &str, now: i64) -> Result<ContainerSas, SasRefusal> {
    let (container, token) = sas.split_once('?').ok_or(SasRefusal::Shape)?;
    let container = container.trim_matches('/');
    if container.is_empty() || container.contains('/') || token.is_empty() {
        return Err(SasRefusal::Shape);
    }
    let params = Params::parse(token);
    let get = |k: &str| params.get(k);
    for (name, label) in [("sig", "sig"), ("sv", "sv"), ("se", "se")] {
        if get(name).is_empty() {
            return Err(SasRefusal::Missing(label));
        }
    }
    if !get("si").is_empty() {
        return Err(SasRefusal::StoredPolicy);
    }
    if get("sr") != "c" {
        return Err(SasRefusal::NotContainer(get("sr").to_owned()));
    }
    if !get("sp").contains('w') {
        return Err(SasRefusal::NoWrite(get("sp").to_owned()));
    }
    let bad_sig = || SasRefusal::BadSignature(account.to_owned(), container.to_owned());
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| bad_sig())?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(get("sig"))
        .map_err(|_| bad_sig())?;
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    // `verify` compares in constant time
    ring::hmac::verify(
        &mac_key,
        string_to_sign(&params, account, container).as_bytes(),
        &given,
    )
    .map_err(|_| bad_sig())?;
    let expiry = parse_time(get("se")).ok_or_else(|| SasRefusal::BadTime(get("se").to_owned()))?;
    if expiry <= now {
        return Err(SasRefusal::Expired(get("se").to_owned()));
    }
    if !get("st").is_empty() {
        let start = parse_time(get("st")).ok_or_else(|| SasRefusal::BadTime(get("st").to_owned()))?;
        if start > now {
            return Err(SasRefusal::NotYetValid(get("st").to_owned()));
        }
    }
    Ok(ContainerSas {
        container: container.to_owned(),
        token: Zeroizing::new(token.to_owned()),
    })
}

/// A SAS token's parameters, URL-decoded (values wiped when dropped).
struct Params(HashMap<String, Zeroizing<String>>);

impl Params {
    fn parse(token: &str) -> Params {
        Params(
            url::form_urlencoded::parse(token.as_bytes())
                .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
                .collect(),
        )
    }

    /// The value of `name`, empty when absent.
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(|v| v.as_str()).unwrap_or("")
    }
}

/// The service SAS string-to-sign of the token's version, for a container (values URL-decoded).
fn string_to_sign(p: &Params, account: &str, container: &str) -> String {
    let sv = p.get("sv");
    let resource = if sv >= "2015-02-21" {
        format!("/blob/{account}/{container}")
    } else {
        format!("/{account}/{container}")
    };
    let mut fields = vec![
        p.get("sp"),
        p.get("st"),
        p.get("se"),
        resource.as_str(),
        p.get("si"),
    ];
    if sv >= "2015-04-05" {
        fields.extend([p.get("sip"), p.get("spr")]);
    }
    fields.push(sv);
    if sv >= "2018-11-09" {
        fields.extend([p.get("sr"), p.get("snapshot")]);
    }
    if sv >= "2020-12-06" {
        fields.push(p.get("ses"));
    }
    fields.extend([
        p.get("rscc"),
        p.get("rscd"),
        p.get("rsce"),
        p.get("rscl"),
        p.get("rsct"),
    ]);
    fields.join("\n")
}

/// `YYYY-MM-DD`, `YYYY-MM-DDThh:mmZ` or `YYYY-MM-DDThh:mm:ss[.fff]Z` as Unix seconds.
fn parse_time(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let t = t.split('.').next()?;
            let mut p = t.split(':');
            let (h, mi) = (num(p.next()?)?, num(p.next()?)?);
            let sec = p.next().map(num).unwrap_or(Some(0))?;
            if p.next().is_some() || h > 23 || mi > 59 || sec > 60 {
                return None;
            }
            h * 3600 + mi * 60 + sec
        }
    };
    Some(days_from_civil(y, m, day) * 86_400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The states container and virtual directory of a job with a container SAS: the states path is a virtual
/// directory under the SAS container (`waimportexport` by default).
pub fn states_location(container: &str, states_path: &str) -> (String, String) {
    let dir = states_path.trim_matches('/');
    let dir = if dir.is_empty() { DEFAULT_STATES_PATH } else { dir };
    (container.to_owned(), format!("{dir}/"))
}

/// The one container a checked SAS opens, written with the SAS; every other container is forbidden.
#[derive(Debug)]
pub struct SasContainers {
    endpoint: String,
    account: String,
    sas: ContainerSas,
    ca_pem: Option<Vec<u8>>,
    open: Mutex<Option<Arc<dyn BlobStore>>>,
}

impl SasContainers {
    /// The container of `sas` at `endpoint`, also trusting the CA certificates of `ca_pem` there.
    pub fn new(endpoint: &str, account: &str, sas: ContainerSas, ca_pem: Option<Vec<u8>>) -> SasContainers {
        SasContainers {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            account: account.to_owned(),
            sas,
            ca_pem,
            open: Mutex::new(None),
        }
    }
}

impl ContainerStores for SasContainers {
    fn container(&self, name: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
        if name != self.sas.container {
            tracing::warn!(container = %name, sas_container = %self.sas.container,
                "the job's ContainerSas does not cover this container: its blobs are not imported");
            return Err(BlobError::Http {
                store: format!("{}/{name}", self.endpoint),
                operation: "open container",
                name: name.to_owned(),
                status: 403,
                code: Some("AuthorizationFailure".into()),
                message: format!(
                    "the job's ContainerSas is for container {} only",
                    self.sas.container
                ),
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.as_ref() {
            return Ok(s.clone());
        }
        // A container SAS cannot create its container: it must exist, as on the service.
        let credential = Credential::Sas(self.sas.token.to_string());
        let mut opts = AzureOptions::new(&self.endpoint, &self.account, name, credential);
        opts.extra_ca_pem = self.ca_pem.clone();
        let store: Arc<dyn BlobStore> = Arc::new(RetryStore::new(AzureStore::new(opts)?, Default::default()));
        *open = Some(store.clone());
        Ok(store)
    }

    fn blob_uri(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.endpoint)
    }
}

#[cfg(test)]
/// A SAS of `account` for `container` signed with `key` the way the Azure SDKs sign version 2020-12-06 and later.
pub(crate) fn make_sas(account: &str, container: &str, key: &str, sp: &str, se: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("sv", "2021-08-06")
        .append_pair("sr", "c")
        .append_pair("sp", sp)
        .append_pair("se", se);
    let unsigned = q.finish();
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &base64::engine::general_purpose::STANDARD.decode(key).unwrap(),
    );
    let to_sign = string_to_sign(&Params::parse(&unsigned), account, container);
    let tag = ring::hmac::sign(&key, to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let mut q = url::form_urlencoded::Serializer::new(unsigned);
    q.append_pair("sig", &sig);
    format!("{container}?{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LW9mLXRoZS1hY2NvdW50";

    #[test]
    fn times_parse_as_the_sdks_write_them() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2026-12-03T07:00:00Z"), Some(1_796_281_200));
        assert_eq!(parse_time("2026-12-03T07:00Z"), Some(1_796_281_200));
        assert_eq!(parse_time("2026-12-03T07:00:00.1234567Z"), Some(1_796_281_200));
        for bad in [
            "2026-13-01",
            "2026-12-03T07:00:00",
            "tomorrow",
            "2026-12-03T25:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_container_sas_is_checked_against_the_account_key() {
        let now = parse_time("2026-12-03T07:00:00Z").unwrap();
        let good = make_sas("acct", "vault", KEY, "racwdl", "2026-12-04T00:00:00Z");
        let ok = check(&good, "acct", KEY, now).unwrap();
        assert_eq!(ok.container, "vault");
        assert!(!format!("{ok:?}").contains("sig"), "the token is redacted");
        let refused = |sas: &str| check(sas, "acct", KEY, now).unwrap_err();
        assert_eq!(
            refused(&make_sas(
                "acct",
                "vault",
                "b3RoZXIta2V5",
                "racwdl",
                "2026-12-04T00:00:00Z"
            )),
            SasRefusal::BadSignature("acct".into(), "vault".into())
        );
        assert!(matches!(
            refused(&make_sas("acct", "vault", KEY, "racwdl", "2026-12-02T00:00:00Z")),
            SasRefusal::Expired(_)
        ));
        assert!(matches!(
            refused(&make_sas("acct", "vault", KEY, "rl", "2026-12-04T00:00:00Z")),
            SasRefusal::NoWrite(_)
        ));
        // a SAS signed for one container and relabelled for another does not verify
        assert!(matches!(
            refused(&good.replacen("vault?", "other?", 1)),
            SasRefusal::BadSignature(..)
        ));
        // a changed permission breaks the signature
        assert!(matches!(
            refused(&good.replace("sp=racwdl", "sp=racwdlx")),
            SasRefusal::BadSignature(..)
        ));
        assert!(matches!(
            refused(&good.replace("sr=c", "sr=b")),
            SasRefusal::NotContainer(_)
        ));
        assert_eq!(refused("no-question-mark"), SasRefusal::Shape);
        assert_eq!(
            refused("vault?sv=2021-08-06&sr=c&sp=w&se=2027-01-01"),
            SasRefusal::Missing("sig")
        );
        assert_eq!(refused(&format!("{good}&si=policy")), SasRefusal::StoredPolicy);
        let msg = SasRefusal::BadSignature("acct".into(), "vault".into()).to_string();
        assert!(!msg.contains("sig="), "{msg}");
    }

    #[test]
    fn other_containers_are_forbidden_with_a_sas() {
        let now = parse_time("2026-12-03T07:00:00Z").unwrap();
        let sas = check(
            &make_sas("acct", "vault", KEY, "rw", "2026-12-04T00:00:00Z"),
            "acct",
            KEY,
            now,
        )
        .unwrap();
        let stores = SasContainers::new("http://127.0.0.1:1/acct", "acct", sas, None);
        let e = stores.container("other").unwrap_err();
        assert_eq!(e.http_status(), Some(403), "{e}");
        assert!(e.to_string().contains("for container vault only"), "{e}");
        assert_eq!(
            states_location("vault", ""),
            ("vault".into(), "waimportexport/".into())
        );
    }
}
