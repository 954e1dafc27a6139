//! Retention: which snapshots `forget` keeps, by restic's rules, as a pure function of the snapshot list.
//!
//! Snapshots are grouped by source set (host and paths). In each group, newest first, a snapshot is kept when
//! any rule keeps it: `last N` keeps the newest N; `hourly/daily/weekly/monthly/yearly N` keep, for the
//! newest N hours/days/ISO weeks/months/years that hold a snapshot, the newest snapshot of each (the buckets
//! are calendar periods in the host's local time zone, so DST changes move no snapshot into a wrong day);
//! `within DURATION` keeps every snapshot taken no earlier than DURATION (calendar arithmetic: `1y2m3d4h`)
//! before the group's newest. Two guards come after the rules: the newest snapshot of a group is never
//! removed, and a snapshot the caller marks as protected (the one the import job seeds while completion has
//! not finished) is kept with the reason given.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A `--keep-within` duration: years, months, days and hours, as `1y6m`, `30d`, `12h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Within, String> {
        let bad = || {
            format!(
                "invalid duration {s:?}: give numbers with units y (years), m (months), d (days), h (hours), \
                 e.g. 1y6m, 30d, 12h"
            )
        };
        let mut w = Within::default();
        let mut num = String::new();
        let mut seen = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u32 = num.parse().map_err(|_| bad())?;
            if n > 100_000 || seen.contains(c) {
                return Err(bad());
            }
            match c {
                'y' => w.years = n,
                'm' => w.months = n,
                'd' => w.days = n,
                'h' => w.hours = n,
                _ => return Err(bad()),
            }
            seen.push(c);
            num.clear();
        }
        if !num.is_empty() || seen.is_empty() || w == Within::default() {
            return Err(bad());
        }
        Ok(w)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Within {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Within {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Within, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The keep rules (stored in the policy, or given to `forget`). A count of 0 or none: the rule is off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Within>,
}

/// The calendar periods of the count rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn reason(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The bucket of a local time (for `Last`: the snapshot's position, so every snapshot is its own).
    fn bucket(self, z: &Zoned, position: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(z.year()),
            i64::from(z.month()),
            i64::from(z.day()),
            i64::from(z.hour()),
        );
        match self {
            Period::Last => position as i64,
            Period::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Period::Day => (y * 100 + m) * 100 + d,
            Period::Week => {
                let w = z.date().iso_week_date();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Period::Month => y * 100 + m,
            Period::Year => y,
        }
    }
}

impl KeepRules {
    /// Whether no rule is set (then `forget` refuses: it would remove all but the newest).
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0) && self.within.is_none()
    }

    fn counts(&self) -> [(Period, u32); 6] {
        [
            (Period::Last, self.last.unwrap_or(0)),
            (Period::Hour, self.hourly.unwrap_or(0)),
            (Period::Day, self.daily.unwrap_or(0)),
            (Period::Week, self.weekly.unwrap_or(0)),
            (Period::Month, self.monthly.unwrap_or(0)),
            (Period::Year, self.yearly.unwrap_or(0)),
        ]
    }

    /// `last 3, daily 7, within 1y`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{} {n}", p.reason()))
            .collect();
        if let Some(w) = self.within {
            parts.push(format!("within {w}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Rules given on a command line override the stored ones rule by rule; a count of 0 turns a rule off.
    pub fn overridden_by(&self, given: &KeepRules) -> KeepRules {
        let pick = |g: Option<u32>, s: Option<u32>| match g {
            Some(0) => None,
            Some(n) => Some(n),
            None => s,
        };
        KeepRules {
            last: pick(given.last, self.last),
            hourly: pick(given.hourly, self.hourly),
            daily: pick(given.daily, self.daily),
            weekly: pick(given.weekly, self.weekly),
            monthly: pick(given.monthly, self.monthly),
            yearly: pick(given.yearly, self.yearly),
            within: given.within.or(self.within),
        }
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Seconds since the epoch, and nanoseconds (the order within a second).
    pub time: i64,
    pub time_nsec: u32,
    /// The source set: host and paths.
    pub host: String,
    pub paths: Vec<String>,
    /// Why it must be kept whatever the rules say, if it must.
    pub protected: Option<String>,
}

/// What retention decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub time: i64,
    pub keep: bool,
    /// The rules (and guards) that keep it; empty when it is removed.
    pub reasons: Vec<String>,
}

/// One source set's decisions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    pub host: String,
    pub paths: Vec<String>,
    pub snapshots: Vec<Decision>,
}

/// What `forget` will do: every group's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    pub rules: String,
    pub groups: Vec<GroupPlan>,
}

impl RetentionPlan {
    /// The ids to remove.
    pub fn removed(&self) -> Vec<&str> {
        self.decisions()
            .filter(|d| !d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    /// How many are kept.
    pub fn kept(&self) -> usize {
        self.decisions().filter(|d| d.keep).count()
    }

    fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.groups.iter().flat_map(|g| g.snapshots.iter())
    }
}

/// A timestamp in `tz` (times outside jiff's range, which no snapshot has, are clamped).
pub fn local(tz: &TimeZone, secs: i64) -> Zoned {
    let t = Timestamp::from_second(secs).unwrap_or(if secs < 0 { Timestamp::MIN } else { Timestamp::MAX });
    t.to_zoned(tz.clone())
}

/// Plans retention of `snapshots` by `rules`, with calendar buckets in `tz`.
pub fn plan(snapshots: &[Candidate], rules: &KeepRules, tz: &TimeZone) -> RetentionPlan {
    let mut groups: BTreeMap<(String, Vec<String>), Vec<&Candidate>> = BTreeMap::new();
    for c in snapshots {
        groups
            .entry((c.host.clone(), c.paths.clone()))
            .or_default()
            .push(c);
    }
    let groups = groups
        .into_iter()
        .map(|((host, paths), mut list)| {
            list.sort_by(|a, b| (b.time, b.time_nsec, &b.id).cmp(&(a.time, a.time_nsec, &a.id)));
            GroupPlan {
                host,
                paths,
                snapshots: plan_group(&list, rules, tz),
            }
        })
        .collect();
    RetentionPlan {
        rules: rules.describe(),
        groups,
    }
}

/// One group, newest first.
fn plan_group(list: &[&Candidate], rules: &KeepRules, tz: &TimeZone) -> Vec<Decision> {
    let mut counts: Vec<(Period, u32, Option<i64>)> =
        rules.counts().iter().map(|&(p, n)| (p, n, None)).collect();
    let cutoff = match (rules.within, list.first()) {
        (Some(w), Some(newest)) => Some(within_cutoff(&local(tz, newest.time), w)),
        _ => None,
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let z = local(tz, c.time);
        let mut reasons = vec![];
        for (period, left, last) in counts.iter_mut() {
            if *left == 0 {
                continue;
            }
            let b = period.bucket(&z, i);
            if *last != Some(b) {
                *last = Some(b);
                *left -= 1;
                reasons.push(period.reason().to_string());
            }
        }
        if let (Some(cut), Some(w)) = (cutoff, rules.within) {
            if c.time >= cut {
                reasons.push(format!("within {w}"));
            }
        }
        if reasons.is_empty() && i == 0 {
            reasons.push("newest of its source set".into());
        }
        if let Some(p) = &c.protected {
            reasons.push(p.clone());
        }
        out.push(Decision {
            id: c.id.clone(),
            time: c.time,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// The earliest time `within` keeps: the newest snapshot's local time minus the years, months and days
/// (calendar arithmetic, a day that does not exist in the shorter month is clamped to its last day), minus
/// the hours.
fn within_cutoff(newest: &Zoned, w: Within) -> i64 {
    let cal = Span::new()
        .years(i64::from(w.years))
        .months(i64::from(w.months))
        .days(i64::from(w.days));
    newest
        .checked_sub(cal)
        .and_then(|z| z.checked_sub(Span::new().hours(i64::from(w.hours))))
        .map(|z| z.timestamp().as_second())
        .unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Central European time with its DST rule (last Sunday of March 02:00 -> 03:00, last Sunday of
    /// October 03:00 -> 02:00), as a POSIX TZ string: no time-zone database needed.
    fn cet() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    /// Seconds since the epoch of a local wall-clock time in `tz` (the earlier one when ambiguous).
    fn at(tz: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(tz.clone())
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn cands(times: &[i64]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Candidate {
                id: format!("{i:04}"),
                time: t,
                time_nsec: 0,
                host: "h".into(),
                paths: vec!["/srv".into()],
                protected: None,
            })
            .collect()
    }

    fn kept_times(p: &RetentionPlan) -> Vec<i64> {
        let mut v: Vec<i64> = p.groups[0]
            .snapshots
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.time)
            .collect();
        v.sort();
        v
    }

    /// Two years (2025-2026) of snapshots every 6 hours from 00:30 local time in CET/CEST, plus an extra
    /// one every Sunday at 23:45: every DST change of both years falls inside.
    fn two_years(tz: &TimeZone) -> Vec<i64> {
        let start = at(tz, 2025, 1, 1, 0, 30);
        let end = at(tz, 2027, 1, 1, 0, 0);
        let mut v = vec![];
        let mut t = start;
        while t < end {
            v.push(t);
            t += 6 * 3600;
        }
        let mut day = jiff::civil::date(2025, 1, 5);
        while day.year() < 2027 {
            v.push(at(tz, day.year(), day.month(), day.day(), 23, 45));
            day = day.checked_add(Span::new().days(7)).unwrap();
        }
        v.sort();
        v
    }

    fn rules(f: impl FnOnce(&mut KeepRules)) -> KeepRules {
        let mut r = KeepRules::default();
        f(&mut r);
        r
    }

    #[test]
    fn durations_parse_and_print() {
        let w: Within = "1y6m2d5h".parse().unwrap();
        assert_eq!((w.years, w.months, w.days, w.hours), (1, 6, 2, 5));
        assert_eq!(w.to_string(), "1y6m2d5h");
        assert_eq!("30d".parse::<Within>().unwrap().to_string(), "30d");
        for bad in ["", "5", "1w", "d", "1d1d", "0d", "-1d", "1.5d"] {
            let e = bad.parse::<Within>().unwrap_err();
            assert!(e.contains("y (years)"), "{bad}: {e}");
        }
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let tz = cet();
        let h = two_years(&tz);
        let p = plan(&cands(&h), &rules(|r| r.last = Some(5)), &tz);
        assert_eq!(kept_times(&p), h[h.len() - 5..].to_vec());
        assert!(p.groups[0].snapshots[..5].iter().all(|d| d.reasons == ["last"]));
    }

    #[test]
    fn keep_daily_keeps_the_last_of_each_local_day_across_dst() {
        let tz = cet();
        let h = two_years(&tz);
        let p = plan(&cands(&h), &rules(|r| r.daily = Some(800)), &tz);
        let kept = kept_times(&p);
        // one per local calendar day of the two years (730 days), each the day's last snapshot
        assert_eq!(kept.len(), 730);
        for (i, t) in kept.iter().enumerate() {
            let z = local(&tz, *t);
            let next_same_day = h.iter().any(|u| u > t && local(&tz, *u).date() == z.date());
            assert!(!next_same_day, "{z} is not its day's last snapshot");
            if i > 0 {
                assert_ne!(local(&tz, kept[i - 1]).date(), z.date());
            }
        }
        // the spring-forward day (2025-03-30, 23 hours) and the fall-back day (2025-10-26, 25 hours)
        // each keep exactly their last snapshot, taken that day in local time
        for (m, d) in [(3, 30), (10, 26)] {
            let day = jiff::civil::date(2025, m, d);
            let of_day: Vec<i64> = h
                .iter()
                .copied()
                .filter(|t| local(&tz, *t).date() == day)
                .collect();
            let kept_of_day: Vec<i64> = kept
                .iter()
                .copied()
                .filter(|t| local(&tz, *t).date() == day)
                .collect();
            assert_eq!(kept_of_day, vec![*of_day.last().unwrap()], "{day}");
        }
    }

    #[test]
    fn the_day_bucket_follows_local_time_not_utc() {
        let tz = cet();
        // 00:30 CEST on 2025-07-02 is 22:30 UTC on 07-01: locally a different day from 23:00 CEST 07-01
        let a = at(&tz, 2025, 7, 1, 23, 0);
        let b = at(&tz, 2025, 7, 2, 0, 30);
        let p = plan(&cands(&[a, b]), &rules(|r| r.daily = Some(2)), &tz);
        assert_eq!(kept_times(&p), vec![a, b]);
        // in UTC both fall on 07-01: only the newer is kept by the daily rule
        let p = plan(&cands(&[a, b]), &rules(|r| r.daily = Some(2)), &TimeZone::UTC);
        assert_eq!(kept_times(&p), vec![b]);
        assert!(p.groups[0].snapshots[1].reasons.is_empty());
    }

    #[test]
    fn keep_hourly_counts_the_repeated_hour_of_fall_back_twice() {
        let tz = cet();
        // 2025-10-26 02:30 CEST and 02:30 CET are one hour apart: same wall-clock hour, same bucket
        let first = at(&tz, 2025, 10, 26, 2, 30);
        let second = first + 3600;
        assert_eq!(local(&tz, first).hour(), local(&tz, second).hour());
        let p = plan(&cands(&[first, second]), &rules(|r| r.hourly = Some(5)), &tz);
        assert_eq!(kept_times(&p), vec![second]);
        // in spring, 01:59 CET and 03:01 CEST are two minutes apart but in different hours
        let a = at(&tz, 2025, 3, 30, 1, 59);
        let b = at(&tz, 2025, 3, 30, 3, 1);
        assert_eq!(b - a, 120);
        let p = plan(&cands(&[a, b]), &rules(|r| r.hourly = Some(5)), &tz);
        assert_eq!(kept_times(&p), vec![a, b]);
    }

    #[test]
    fn weekly_monthly_yearly_buckets() {
        let tz = cet();
        let h = two_years(&tz);
        // weekly: ISO weeks; the newest snapshot of each kept week is a Sunday 23:45 one except the last week
        let p = plan(&cands(&h), &rules(|r| r.weekly = Some(10)), &tz);
        let kept = kept_times(&p);
        assert_eq!(kept.len(), 10);
        for t in &kept[..9] {
            let z = local(&tz, *t);
            assert_eq!(
                (z.weekday(), z.hour(), z.minute()),
                (jiff::civil::Weekday::Sunday, 23, 45)
            );
        }
        // monthly: the last snapshot of each of the 24 local months, taken on the month's last day
        let p = plan(&cands(&h), &rules(|r| r.monthly = Some(100)), &tz);
        let kept = kept_times(&p);
        assert_eq!(kept.len(), 24);
        for t in &kept {
            let z = local(&tz, *t);
            assert_eq!(z.date(), z.date().last_of_month(), "{z}");
            let later_same_month = h
                .iter()
                .any(|u| u > t && local(&tz, *u).month() == z.month() && local(&tz, *u).year() == z.year());
            assert!(!later_same_month, "{z}");
        }
        // yearly: the newest of 2025 and of 2026
        let p = plan(&cands(&h), &rules(|r| r.yearly = Some(3)), &tz);
        let kept = kept_times(&p);
        assert_eq!(kept.len(), 2);
        assert_eq!(local(&tz, kept[0]).date(), jiff::civil::date(2025, 12, 31));
        assert_eq!(kept[1], *h.last().unwrap());
    }

    #[test]
    fn keep_within_is_measured_from_the_newest_snapshot_in_calendar_terms() {
        let tz = cet();
        let h = two_years(&tz);
        let newest = *h.last().unwrap();
        let p = plan(&cands(&h), &rules(|r| r.within = "1m".parse().ok()), &tz);
        let kept = kept_times(&p);
        // the newest (2026-12-31, local time hh:mm) minus one month: 2026-11-30 hh:mm local
        let nz = local(&tz, newest);
        assert_eq!(nz.date(), jiff::civil::date(2026, 12, 31));
        let cut = at(&tz, 2026, 11, 30, nz.hour(), nz.minute());
        assert_eq!(kept, h.iter().copied().filter(|t| *t >= cut).collect::<Vec<_>>());
        assert_eq!(*kept.last().unwrap(), newest);
        // across the autumn DST change, 1d back is the same wall-clock time (25 hours earlier)
        let t0 = at(&tz, 2025, 10, 25, 12, 0);
        let t1 = at(&tz, 2025, 10, 26, 12, 0);
        assert_eq!(t1 - t0, 25 * 3600);
        let p = plan(
            &cands(&[t0 - 1, t0, t1]),
            &rules(|r| r.within = "1d".parse().ok()),
            &tz,
        );
        assert_eq!(kept_times(&p), vec![t0, t1]);
    }

    #[test]
    fn rules_combine_and_every_reason_is_listed() {
        let tz = cet();
        let h = two_years(&tz);
        let r = rules(|r| {
            r.last = Some(2);
            r.daily = Some(7);
            r.monthly = Some(12);
        });
        let p = plan(&cands(&h), &r, &tz);
        let newest = &p.groups[0].snapshots[0];
        assert_eq!(newest.reasons, ["last", "daily", "monthly"]);
        let mut expect: Vec<i64> = [
            plan(&cands(&h), &rules(|x| x.last = Some(2)), &tz),
            plan(&cands(&h), &rules(|x| x.daily = Some(7)), &tz),
            plan(&cands(&h), &rules(|x| x.monthly = Some(12)), &tz),
        ]
        .iter()
        .flat_map(kept_times)
        .collect();
        expect.sort();
        expect.dedup();
        assert_eq!(kept_times(&p), expect);
        assert_eq!(p.rules, "last 2, daily 7, monthly 12");
    }

    #[test]
    fn guards_keep_the_newest_of_each_source_set_and_protected_snapshots() {
        let tz = cet();
        let mut c = cands(&[100, 200, 300]);
        c[0].protected = Some("seeded by import job j1".into());
        c.push(Candidate {
            paths: vec!["/home".into()],
            ..c[1].clone()
        });
        // a rule that keeps nothing old: within 1h of the newest
        let p = plan(&c, &rules(|r| r.within = "1h".parse().ok()), &tz);
        assert_eq!(p.groups.len(), 2);
        let home = &p.groups[0];
        assert_eq!(home.paths, ["/home"]);
        assert_eq!(home.snapshots[0].reasons, ["within 1h"]);
        let srv = &p.groups[1].snapshots;
        assert_eq!(srv.iter().map(|d| d.keep).collect::<Vec<_>>(), [true, true, true]);
        let p = plan(&c, &rules(|r| r.last = Some(1)), &tz);
        let srv = &p.groups[1].snapshots;
        assert_eq!(srv[0].reasons, ["last"]);
        assert!(!srv[1].keep && srv[1].reasons.is_empty());
        assert_eq!(srv[2].reasons, ["seeded by import job j1"]);
        assert_eq!(p.removed(), ["0001"]);
        // no rule kept the newest: the guard does
        let p = plan(&cands(&[1, 2]), &rules(|r| r.hourly = Some(0)), &tz);
        assert_eq!(p.groups[0].snapshots[0].reasons, ["newest of its source set"]);
        assert_eq!(p.removed(), ["0000"]);
    }

    #[test]
    fn stored_rules_are_overridden_rule_by_rule() {
        let stored = rules(|r| {
            r.daily = Some(7);
            r.weekly = Some(4);
        });
        let given = rules(|r| {
            r.daily = Some(30);
            r.weekly = Some(0);
        });
        let o = stored.overridden_by(&given);
        assert_eq!((o.daily, o.weekly), (Some(30), None));
        assert!(KeepRules::default().is_empty());
        assert!(!o.is_empty());
        let j = serde_json::to_string(&rules(|r| r.within = "2y".parse().ok())).unwrap();
        assert_eq!(j, r#"{"within":"2y"}"#);
        let back: KeepRules = serde_json::from_str(&j).unwrap();
        assert_eq!(back.within.unwrap().years, 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over random histories within the two years: the newest is always kept; a snapshot is kept exactly
        /// when some rule or guard names it; `last N` alone keeps min(N, len); a daily rule keeps at most one
        /// per local day and no more than N.
        #[test]
        fn retention_invariants(
            offsets in proptest::collection::vec(0i64..(730 * 86_400), 1..120),
            last in 0u32..6,
            daily in 0u32..20,
            monthly in 0u32..6,
        ) {
            let tz = cet();
            let base = at(&tz, 2025, 1, 1, 0, 0);
            let mut times: Vec<i64> = offsets.iter().map(|o| base + o).collect();
            times.sort();
            times.dedup();
            let c = cands(&times);
            let r = KeepRules { last: Some(last), daily: Some(daily), monthly: Some(monthly), ..Default::default() };
            let p = plan(&c, &r, &tz);
            let g = &p.groups[0].snapshots;
            prop_assert!(g[0].keep);
            for d in g {
                prop_assert_eq!(d.keep, !d.reasons.is_empty());
            }
            let daily_kept: Vec<_> = g.iter().filter(|d| d.reasons.iter().any(|r| r == "daily")).collect();
            prop_assert!(daily_kept.len() <= daily as usize);
            let mut days: Vec<_> = daily_kept.iter().map(|d| local(&tz, d.time).date()).collect();
            let n = days.len();
            days.dedup();
            prop_assert_eq!(days.len(), n);
            let only_last = plan(&c, &KeepRules { last: Some(last), ..Default::default() }, &tz);
            prop_assert_eq!(only_last.kept(), (last as usize).clamp(1, times.len()));
        }
    }
}
