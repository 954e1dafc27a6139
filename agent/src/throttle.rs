//! The upload limit into the vault, and work-hours throttling as the Azure Backup agent has it.
//!
//! [`UploadLimit`] is stored in the policy: either one rate at all times (`--limit-upload`), or a rate for
//! work hours and another for the rest of the week (`--limit-upload-work`, `--limit-upload-off`,
//! `--work-hours 08:00-18:00`, `--work-days mon-fri`), in the host's local time zone. [`UploadLimit::rate_at`]
//! is the pure schedule; the backup's meter asks it again for every piece it sends, so the limit in force
//! follows the clock during a long upload.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Work hours: a daily span of local time and the days it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkHours {
    /// Minutes after midnight, start inclusive, end exclusive; start < end.
    pub start: u16,
    pub end: u16,
}

/// Days of the week, Monday = bit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkDays(pub u8);

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl FromStr for WorkHours {
    type Err = String;
    fn from_str(s: &str) -> Result<WorkHours, String> {
        let bad = || format!("invalid work hours {s:?}: give HH:MM-HH:MM in local time, e.g. 08:00-18:00");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let (start, end) = (parse_hhmm(a).ok_or_else(bad)?, parse_hhmm(b).ok_or_else(bad)?);
        if start >= end {
            return Err(format!(
                "invalid work hours {s:?}: the start must be before the end (spans past midnight are not supported)"
            ));
        }
        Ok(WorkHours { start, end })
    }
}

impl fmt::Display for WorkHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

impl FromStr for WorkDays {
    type Err = String;
    fn from_str(s: &str) -> Result<WorkDays, String> {
        let bad = || {
            format!("invalid work days {s:?}: give days or ranges of mon tue wed thu fri sat sun, e.g. mon-fri or mon,wed,fri")
        };
        let day = |d: &str| DAYS.iter().position(|x| *x == d.trim().to_ascii_lowercase());
        let mut bits = 0u8;
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                    if a > b {
                        return Err(bad());
                    }
                    (a..=b).for_each(|i| bits |= 1 << i);
                }
                None => bits |= 1 << day(part).ok_or_else(bad)?,
            }
        }
        Ok(WorkDays(bits))
    }
}

impl fmt::Display for WorkDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..7)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| DAYS[i])
            .collect();
        f.write_str(&names.join(","))
    }
}

macro_rules! serde_via_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_string!(WorkHours);
serde_via_string!(WorkDays);

/// The stored upload limit (bytes per second; none: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadLimit {
    /// At all times, unless the work-hours schedule is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// During work hours (none: unlimited then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<u64>,
    /// Outside work hours (none: unlimited then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_hours: Option<WorkHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_days: Option<WorkDays>,
}

impl UploadLimit {
    /// Whether nothing is limited.
    pub fn is_none(&self) -> bool {
        *self == UploadLimit::default()
    }

    /// Whether the limit follows work hours.
    pub fn scheduled(&self) -> bool {
        self.work_hours.is_some()
    }

    /// Checks that a schedule is complete: work hours need at least one of the two rates.
    pub fn validate(&self) -> Result<(), String> {
        if self.work_hours.is_some() && self.work.is_none() && self.off.is_none() {
            return Err("--work-hours needs --limit-upload-work RATE and/or --limit-upload-off RATE".into());
        }
        if self.work_hours.is_none() && (self.work.is_some() || self.off.is_some()) {
            return Err(
                "--limit-upload-work and --limit-upload-off need --work-hours HH:MM-HH:MM (and --work-days, default mon-fri)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The limit in force at `secs` (seconds since the epoch) in `tz`.
    pub fn rate_at(&self, secs: i64, tz: &TimeZone) -> Option<u64> {
        let Some(h) = self.work_hours else {
            return self.rate;
        };
        let z = crate::retention::local(tz, secs);
        let days = self.work_days.unwrap_or(WorkDays(0b1_1111));
        let day = z.weekday().to_monday_zero_offset() as u8;
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        let working = days.0 & (1 << day) != 0 && (h.start..h.end).contains(&minute);
        if working {
            self.work
        } else {
            self.off
        }
    }

    /// `10.0 MiB/s`, or `10.0 MiB/s during work hours 08:00-18:00 mon-fri, unlimited otherwise`.
    pub fn describe(&self) -> String {
        let r = |x: Option<u64>| match x {
            Some(b) => format!("{}/s", seedship_shared::units::human(b)),
            None => "unlimited".to_string(),
        };
        match self.work_hours {
            None => r(self.rate),
            Some(h) => format!(
                "{} during work hours {h} {}, {} otherwise",
                r(self.work),
                self.work_days.unwrap_or(WorkDays(0b1_1111)),
                r(self.off)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(
            "08:00-18:30".parse::<WorkHours>().unwrap(),
            WorkHours {
                start: 480,
                end: 1110
            }
        );
        assert_eq!(
            "08:00-18:30".parse::<WorkHours>().unwrap().to_string(),
            "08:00-18:30"
        );
        for bad in ["8-18", "18:00-08:00", "08:00-25:00", "08:60-09:00", ""] {
            assert!(bad.parse::<WorkHours>().is_err(), "{bad}");
        }
        assert_eq!("mon-fri".parse::<WorkDays>().unwrap(), WorkDays(0b1_1111));
        assert_eq!("Sat,sun".parse::<WorkDays>().unwrap().to_string(), "sat,sun");
        assert_eq!(
            "mon-wed,fri".parse::<WorkDays>().unwrap().to_string(),
            "mon,tue,wed,fri"
        );
        for bad in ["fri-mon", "monday", "", "mon-"] {
            assert!(bad.parse::<WorkDays>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_follows_the_local_clock() {
        let tz = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let l = UploadLimit {
            work: Some(1 << 20),
            off: Some(10 << 20),
            work_hours: Some("08:00-18:00".parse().unwrap()),
            work_days: Some("mon-fri".parse().unwrap()),
            ..Default::default()
        };
        l.validate().unwrap();
        let at = |d: i8, h: i8, m: i8| {
            jiff::civil::date(2026, 7, d)
                .at(h, m, 0, 0)
                .to_zoned(tz.clone())
                .unwrap()
                .timestamp()
                .as_second()
        };
        // 2026-07-01 is a Wednesday; 07-04 a Saturday
        assert_eq!(l.rate_at(at(1, 7, 59), &tz), Some(10 << 20));
        assert_eq!(l.rate_at(at(1, 8, 0), &tz), Some(1 << 20));
        assert_eq!(l.rate_at(at(1, 17, 59), &tz), Some(1 << 20));
        assert_eq!(l.rate_at(at(1, 18, 0), &tz), Some(10 << 20));
        assert_eq!(l.rate_at(at(4, 12, 0), &tz), Some(10 << 20));
        // 08:30 local in summer is 06:30 UTC: in UTC it would be off hours
        assert_eq!(l.rate_at(at(1, 8, 30), &TimeZone::UTC), Some(10 << 20));
        let unlimited_off = UploadLimit {
            off: None,
            ..l.clone()
        };
        assert_eq!(unlimited_off.rate_at(at(4, 12, 0), &tz), None);
        assert!(UploadLimit {
            work_hours: None,
            ..l
        }
        .validate()
        .is_err());
        assert_eq!(
            UploadLimit {
                rate: Some(5 << 20),
                ..Default::default()
            }
            .rate_at(0, &tz),
            Some(5 << 20)
        );
    }
}
