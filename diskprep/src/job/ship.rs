//! `u:` (the `ship` command): after the drives are sent, tell the service the carrier, tracking number, drive
//! count, ship date, return address and return carrier account, then move the job to `Shipping`; run later,
//! show the job's state and each drive's state.
//!
//! [`locate`] finds the job recorded by preparation (`<staging>/<job>/diskprep/job.json`); [`check`] applies
//! the rules before anything is sent (a carrier the location supports, no empty field, a sensible drive count
//! and date); [`commit`] sends one Update Job Properties with the details and a second with `State=Shipping`;
//! [`save`] keeps the details in `<staging>/<job>/diskprep/shipping.json` (mode 0600: it holds personal data).
//! This module prints nothing and asks nothing; the console does.

use crate::job::create::{JobError, JobRecord};
use crate::job::record::write_private_json;
use crate::prep::session::SessionState;
use crate::prep::staging::{find_jobs, StagedJob, StagingCheckError};
use seedship_shared::api::{
    ImportError, ImportService, JobState, JobUpdate, JobUpdateProperties, Location, Package, ReturnAddress,
    ReturnShipping,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file, inside `<staging>/<job>/diskprep/`, that keeps the shipping details.
pub const SHIPPING_FILE: &str = "shipping.json";

/// Why `u:` or `delete-job` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Api(#[from] ImportError),
    #[error(transparent)]
    Staging(#[from] StagingCheckError),
    #[error("no job in {staging} has an import job recorded yet; prepare its drives first (`seedship-diskprep s:{}`)", staging.display())]
    NoJob { staging: PathBuf },
    #[error("{staging} holds several import jobs ({jobs}); say which with --job NAME")]
    SeveralJobs { staging: PathBuf, jobs: String },
    #[error("no job named {name} in {staging} has an import job recorded (recorded: {available})")]
    NoSuchJob {
        name: String,
        staging: PathBuf,
        available: String,
    },
    #[error("carrier '{carrier}' is not accepted at {location}; use one of: {supported}")]
    UnsupportedCarrier {
        carrier: String,
        location: String,
        supported: String,
    },
    #[error("the {field} is empty; give it (or its command-line option)")]
    Empty { field: &'static str },
    #[error("the drive count {count} is not possible: job {job} has {drives} drive(s), all in one package")]
    BadDriveCount { count: u32, job: String, drives: usize },
    #[error("the ship date '{value}' is not a date of the form YYYY-MM-DD")]
    BadShipDate { value: String },
    #[error("the shipping details were not confirmed; nothing was sent")]
    NotConfirmed,
}

/// What the operator enters in `u:` mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipDetails {
    pub job_name: String,
    pub storage_account: String,
    pub carrier: String,
    pub tracking_number: String,
    pub drive_count: u32,
    /// `YYYY-MM-DD`.
    pub ship_date: String,
    pub return_address: ReturnAddress,
    pub return_shipping: ReturnShipping,
    /// Seconds since the Unix epoch when the service accepted the details; `None` until then.
    pub committed: Option<i64>,
}

/// Finds the job with a recorded import job in `staging`: `job` by name, or the only one recorded.
pub fn locate(staging: &Path, job: Option<&str>) -> Result<(StagedJob, JobRecord), ShipError> {
    let mut recorded = Vec::new();
    for j in find_jobs(staging)? {
        match JobRecord::load(&j.dir) {
            Ok(r) => recorded.push((j, r)),
            Err(JobError::NoRecord { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let names = |v: &[(StagedJob, JobRecord)]| {
        v.iter()
            .map(|(j, _)| j.descriptor.job_name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match job {
        Some(name) => {
            let available = names(&recorded);
            recorded
                .into_iter()
                .find(|(j, _)| j.descriptor.job_name == name)
                .ok_or_else(|| ShipError::NoSuchJob {
                    name: name.to_string(),
                    staging: staging.to_owned(),
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available
                    },
                })
        }
        None if recorded.len() == 1 => Ok(recorded.remove(0)),
        None if recorded.is_empty() => Err(ShipError::NoJob {
            staging: staging.to_owned(),
        }),
        None => Err(ShipError::SeveralJobs {
            staging: staging.to_owned(),
            jobs: names(&recorded),
        }),
    }
}

/// Checks the details against the rules and the shipping location, and writes the carrier as the location
/// spells it.
pub fn check(details: &mut ShipDetails, location: &Location, drives: usize) -> Result<(), ShipError> {
    let fields: [(&'static str, &str); 7] = [
        ("tracking number", &details.tracking_number),
        ("return name", &details.return_address.name),
        ("return address", &details.return_address.address),
        ("return phone", &details.return_address.phone),
        ("return email", &details.return_address.email),
        ("return carrier", &details.return_shipping.carrier_name),
        (
            "return carrier account number",
            &details.return_shipping.carrier_account_number,
        ),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(ShipError::Empty { field });
    }
    let supported = &location.supported_carriers;
    details.carrier = supported
        .iter()
        .find(|c| c.eq_ignore_ascii_case(details.carrier.trim()))
        .cloned()
        .ok_or_else(|| ShipError::UnsupportedCarrier {
            carrier: details.carrier.clone(),
            location: location.name.clone(),
            supported: supported.join(", "),
        })?;
    if details.drive_count == 0 || details.drive_count as usize > drives {
        return Err(ShipError::BadDriveCount {
            count: details.drive_count,
            job: details.job_name.clone(),
            drives,
        });
    }
    if parse_date(&details.ship_date).is_none() {
        return Err(ShipError::BadShipDate {
            value: details.ship_date.clone(),
        });
    }
    Ok(())
}

/// Sends the details (Update Job Properties), then `State=Shipping` (a second update), and marks them
/// committed.
pub fn commit(client: &ImportService, details: &mut ShipDetails) -> Result<(), ShipError> {
    let account = &details.storage_account;
    let name = &details.job_name;
    let first = JobUpdate {
        name: None,
        properties: JobUpdateProperties {
            delivery_package: Some(Package {
                carrier_name: details.carrier.clone(),
                tracking_number: details.tracking_number.trim().to_string(),
                drive_count: Some(details.drive_count),
                ship_date: Some(details.ship_date.clone()),
            }),
            return_address: Some(details.return_address.clone()),
            return_shipping: Some(details.return_shipping.clone()),
            ..Default::default()
        },
    };
    client.update_job(account, name, &first)?;
    let second = JobUpdate {
        name: None,
        properties: JobUpdateProperties {
            state: Some(JobState::Shipping),
            ..Default::default()
        },
    };
    client.update_job(account, name, &second)?;
    details.committed = Some(seedship_shared::time::now_unix());
    Ok(())
}

/// Where the details of a job folder are kept.
pub fn details_path(job_dir: &Path) -> PathBuf {
    SessionState::dir_of(job_dir).join(SHIPPING_FILE)
}

/// Writes the details (mode 0600) and returns the path.
pub fn save(job_dir: &Path, details: &ShipDetails) -> Result<PathBuf, ShipError> {
    let path = details_path(job_dir);
    write_private_json(&path, details)?;
    Ok(path)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = seedship_shared::time::now_unix().div_euclid(86_400);
    let (y, m, d) = seedship_shared::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` (a real calendar date between 2000 and 2999).
pub fn parse_date(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((2000..3000).contains(&y) && (1..=days_in).contains(&d)).then_some((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> ShipDetails {
        ShipDetails {
            job_name: "job1".into(),
            storage_account: "acct".into(),
            carrier: "fedex".into(),
            tracking_number: "123".into(),
            drive_count: 2,
            ship_date: "2026-02-28".into(),
            return_address: ReturnAddress {
                name: "A".into(),
                address: "B".into(),
                phone: "C".into(),
                email: "d@e".into(),
            },
            return_shipping: ReturnShipping {
                carrier_name: "FedEx".into(),
                carrier_account_number: "77".into(),
            },
            committed: None,
        }
    }

    fn location() -> Location {
        Location {
            name: "West US".into(),
            supported_carriers: vec!["FedEx".into(), "DHL".into()],
            ..Default::default()
        }
    }

    #[test]
    fn carrier_is_checked_and_spelled_as_the_location_does() {
        let mut d = details();
        check(&mut d, &location(), 2).unwrap();
        assert_eq!(d.carrier, "FedEx");
        d.carrier = "Pigeon".into();
        let e = check(&mut d, &location(), 2).unwrap_err();
        assert!(e.to_string().contains("FedEx, DHL"), "{e}");
    }

    #[test]
    fn empty_fields_counts_and_dates_are_refused() {
        let mut d = details();
        d.return_address.phone = " ".into();
        assert!(matches!(
            check(&mut d, &location(), 2),
            Err(ShipError::Empty {
                field: "return phone"
            })
        ));
        let mut d = details();
        d.drive_count = 3;
        assert!(matches!(
            check(&mut d, &location(), 2),
            Err(ShipError::BadDriveCount { .. })
        ));
        let mut d = details();
        d.ship_date = "2026-02-29".into();
        assert!(matches!(
            check(&mut d, &location(), 2),
            Err(ShipError::BadShipDate { .. })
        ));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2100-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-1-01"), None);
        assert_eq!(parse_date("+024-01-01"), None);
        assert_eq!(seedship_shared::time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(seedship_shared::time::civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(seedship_shared::time::civil_from_days(-1), (1969, 12, 31));
        assert!(parse_date(&today()).is_some());
    }
}
