//! Calendar arithmetic for the UTC times seedship prints and writes (journal records, the API's ISO 8601
//! dates, the agent's status): one civil-date conversion instead of one per caller, no time-zone database.

/// Seconds since 1970-01-01 00:00:00 UTC by the system clock (0 if the clock is set before it).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A UTC time broken into its calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// The calendar fields of `secs` seconds since 1970-01-01 00:00:00 UTC (negative: before it).
    pub fn from_unix(secs: i64) -> UtcTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400) as u32;
        UtcTime {
            year,
            month,
            day,
            hour: s / 3600,
            minute: s / 60 % 60,
            second: s % 60,
        }
    }

    /// `2026-11-22 07:05:09 UTC`.
    pub fn readable(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// ISO 8601 with a `Z`: `2026-11-22T07:05:09Z`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Gregorian date (year, month 1-12, day 1-31) of a day count since 1970-01-01 (era arithmetic on 400-year
/// cycles of 146,097 days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(UtcTime::from_unix(0).readable(), "1970-01-01 00:00:00 UTC");
        assert_eq!(UtcTime::from_unix(951_782_400).iso8601(), "2000-02-29T00:00:00Z");
        assert_eq!(
            UtcTime::from_unix(1_398_817_432).iso8601(),
            "2014-04-30T00:23:52Z"
        );
        assert_eq!(UtcTime::from_unix(-1).readable(), "1969-12-31 23:59:59 UTC");
        assert_eq!(
            UtcTime::from_unix(4_107_542_399).readable(),
            "2100-02-28 23:59:59 UTC"
        );
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut prev = civil_from_days(-800_000);
        for days in -799_999..800_000 {
            let cur = civil_from_days(days);
            let next_in_month = (prev.0, prev.1, prev.2 + 1);
            let next_month = if prev.1 == 12 {
                (prev.0 + 1, 1, 1)
            } else {
                (prev.0, prev.1 + 1, 1)
            };
            assert!(cur == next_in_month || cur == next_month, "{prev:?} -> {cur:?}");
            prev = cur;
        }
    }
}
