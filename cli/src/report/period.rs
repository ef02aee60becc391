//! The report's period and baseline: half-open time windows, in ns since the epoch (UTC).

use meshaudit::integrity::verify::record::parse_rfc3339;

pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const NS_PER_MINUTE: u64 = 60 * 1_000_000_000;

/// `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

impl Window {
    pub fn contains(self, t: u64) -> bool {
        self.from <= t && t < self.to
    }

    /// Whole days (UTC) the window touches, as day numbers since the epoch.
    pub fn days(self) -> std::ops::Range<u64> {
        let last = self.to.saturating_sub(1).max(self.from);
        self.from / NS_PER_DAY..last / NS_PER_DAY + 1
    }
}

/// Which window an event falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Baseline,
    Period,
}

/// The period (`None`: every event outside the baseline) and the baseline it is compared with.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    pub period: Option<Window>,
    pub baseline: Option<Window>,
}

impl Periods {
    /// From the command line's times: the baseline defaults to as long a window right before
    /// the period (when the period is given).
    pub fn new(
        from: Option<u64>,
        to: Option<u64>,
        baseline_from: Option<u64>,
        baseline_to: Option<u64>,
    ) -> Result<Periods, String> {
        let period = match (from, to) {
            (None, None) => None,
            (Some(from), Some(to)) => Some(Window { from, to }),
            _ => return Err("--from and --to go together".into()),
        };
        if let Some(p) = period {
            if p.to <= p.from {
                return Err("--to must be after --from".into());
            }
        }
        let baseline = match (baseline_from, baseline_to, period) {
            (Some(from), Some(to), _) => Some(Window { from, to }),
            (None, None, Some(p)) => Some(Window {
                from: p.from.saturating_sub(p.to - p.from),
                to: p.from,
            }),
            (None, None, None) => None,
            _ => return Err("--baseline-from and --baseline-to go together".into()),
        };
        if let Some(b) = baseline {
            if b.to <= b.from {
                return Err("the baseline's end must be after its start".into());
            }
            if period.is_some_and(|p| p.from < b.to && b.from < p.to) {
                return Err("the baseline overlaps the period".into());
            }
        }
        Ok(Periods { period, baseline })
    }

    pub fn side(&self, t: u64) -> Option<Side> {
        if self.baseline.is_some_and(|b| b.contains(t)) {
            return Some(Side::Baseline);
        }
        match self.period {
            Some(p) => p.contains(t).then_some(Side::Period),
            None => Some(Side::Period),
        }
    }
}

/// A time on the command line: RFC 3339, or a date `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(flag: &str, text: &str) -> Result<u64, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    parse_rfc3339(&full)
        .ok_or_else(|| format!("{flag}: {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

/// Working hours (UTC) `HH:MM-HH:MM`; a range past midnight (`22:00-06:00`) wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    start_minute: u64,
    end_minute: u64,
}

impl Hours {
    pub fn parse(text: &str) -> Result<Hours, String> {
        let bad = || format!("--hours: {text:?} is not HH:MM-HH:MM");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u64> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (start_minute, end_minute) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
        if start_minute == end_minute {
            return Err(format!("--hours: {text:?} is an empty range"));
        }
        Ok(Hours {
            start_minute,
            end_minute,
        })
    }

    /// Whether `t` (ns since the epoch) is outside the hours.
    pub fn outside(self, t: u64) -> bool {
        let minute = (t % NS_PER_DAY) / NS_PER_MINUTE;
        let inside = if self.start_minute < self.end_minute {
            self.start_minute <= minute && minute < self.end_minute
        } else {
            minute >= self.start_minute || minute < self.end_minute
        };
        !inside
    }

    /// The first minute of the day inside, and the first after (UTC).
    pub fn minutes(self) -> (u64, u64) {
        (self.start_minute, self.end_minute)
    }

    pub fn describe(self) -> String {
        let f = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{}-{} UTC", f(self.start_minute), f(self.end_minute))
    }
}

/// A day number as `YYYY-MM-DD`.
pub fn day_name(day: u64) -> String {
    let secs = i64::try_from(day * 86_400).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}

/// A time as RFC 3339 (seconds, UTC).
pub fn time_name(ns: u64) -> String {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u64 {
        parse_time("--from", s).unwrap_or_default()
    }

    #[test]
    fn the_baseline_defaults_to_as_long_a_window_before_the_period() {
        let p = Periods::new(Some(t("2026-11-08")), Some(t("2026-11-15")), None, None);
        let p = p.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(p.baseline.map(|b| b.from), Some(t("2026-11-01")));
        assert_eq!(p.side(t("2026-11-07T23:59:59Z")), Some(Side::Baseline));
        assert_eq!(p.side(t("2026-11-08")), Some(Side::Period));
        assert_eq!(p.side(t("2026-11-15")), None);
        assert_eq!(p.period.map(|w| w.days().count()), Some(7));
    }

    #[test]
    fn bad_windows_are_refused_naming_the_flag() {
        assert!(Periods::new(Some(1), None, None, None).is_err());
        assert!(Periods::new(Some(5), Some(5), None, None).is_err());
        assert!(Periods::new(Some(10), Some(20), Some(15), Some(30)).is_err());
        let e = parse_time("--from", "last week").err().unwrap_or_default();
        assert!(e.starts_with("--from:"), "{e}");
    }

    #[test]
    fn hours_wrap_past_midnight() {
        let day = t("2026-11-02");
        let at = |h: u64, m: u64| day + (h * 60 + m) * NS_PER_MINUTE;
        let office = Hours::parse("08:00-18:30").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!office.outside(at(8, 0)) && !office.outside(at(18, 29)));
        assert!(office.outside(at(18, 30)) && office.outside(at(3, 0)));
        let night = Hours::parse("22:00-06:00").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!night.outside(at(23, 0)) && !night.outside(at(5, 59)));
        assert!(night.outside(at(12, 0)));
        assert!(Hours::parse("8-18").is_err() && Hours::parse("08:00-08:00").is_err());
    }
}
