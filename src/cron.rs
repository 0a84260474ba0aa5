//! Five-field cron expressions (minute hour day-of-month month day-of-week), as scheduled tasks
//! repeat: parsing with errors that say how to fix the expression, and the next run after a
//! given instant in a time zone.
//!
//! Semantics are those of the classic (Vixie) cron: `0` and `7` are Sunday, names (`mon`, `jan`)
//! are accepted, and when both day fields are restricted a day matches either of them. Times are
//! wall-clock times in the zone: a time that does not exist on the day clocks spring forward
//! runs at the first instant after the gap, and a time that occurs twice on the day clocks fall
//! back runs once, at the first occurrence.
//!
//! The grammar is small and ours already (the scheduling tool validates with it, the fuzz
//! target exercises it); the available cron crates implement other dialects (seconds and years
//! fields, Sunday as 1, both day fields required), which would need a translation layer larger
//! than this evaluator.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// How far ahead a next run is looked for (a `30 2 29 2 *` may be years away).
pub const HORIZON_DAYS: i64 = 8 * 366;

const HELP: &str = "use five fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"";
const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A parsed expression: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    /// Whether the day-of-month / day-of-week field was `*` (then the other one alone decides).
    days_any: bool,
    weekdays_any: bool,
}

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(expr: &str) -> Result<Cron, String> {
        Cron::parse(expr)
    }
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("{expr:?} has {} fields; {HELP}", fields.len()));
        }
        let minutes = field(fields[0], 1, 0, 59, &[])?;
        let hours = field(fields[1], 2, 0, 23, &[])?;
        let days = field(fields[2], 3, 1, 31, &[])?;
        let months = field(fields[3], 4, 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], 5, 0, 7, &DAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f; // 7 is Sunday too
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_any: fields[2] == "*",
            weekdays_any: fields[4] == "*",
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first run strictly after `after`, in the zone `tz`; `None` if there is none within
    /// [`HORIZON_DAYS`] (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Wall-clock minutes from the one after `after`'s own minute.
        let local = after.to_zoned(tz.clone()).datetime();
        let start = DateTime::from_parts(local.date(), Time::new(local.hour(), local.minute(), 0, 0).ok()?)
            .checked_add(jiff::Span::new().minutes(1))
            .ok()?;
        let mut day = start.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(day) {
                for hour in 0..24i8 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60i8 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let wall = DateTime::from_parts(day, Time::new(hour, minute, 0, 0).ok()?);
                        if wall < start {
                            continue;
                        }
                        // Gaps resolve to the instant after them, folds to the first occurrence.
                        let at = wall.to_zoned(tz.clone()).ok()?.timestamp();
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// One field's allowed values as a bit set (bit n: value n).
fn field(text: &str, index: usize, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    let offset = if index == 4 { 1 } else { 0 };
    let value = |v: &str| -> Option<u32> {
        v.parse::<u32>()
            .ok()
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(v)).map(|p| p as u32 + offset))
    };
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 && n <= hi => n,
                _ => return Err(format!("bad step {s:?} in {text:?}; {HELP}")),
            },
        };
        let (a, b) = if range == "*" {
            (Some(lo), Some(hi))
        } else {
            match range.split_once('-') {
                Some((a, b)) => (value(a), value(b)),
                // `5/15`: from 5 to the end, every 15.
                None if step > 1 => (value(range), Some(hi)),
                None => (value(range), value(range)),
            }
        };
        match (a, b) {
            (Some(a), Some(b)) if a >= lo && b <= hi && a <= b => {
                let mut v = a;
                while v <= b {
                    bits |= 1 << v;
                    v += step;
                }
            }
            _ => return Err(format!("{item:?} is not valid in field {index} ({lo}-{hi}); {HELP}")),
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, tz: &str) -> Timestamp {
        s.parse::<DateTime>().unwrap().to_zoned(TimeZone::get(tz).unwrap()).unwrap().timestamp()
    }

    fn local(t: Timestamp, tz: &str) -> String {
        t.to_zoned(TimeZone::get(tz).unwrap()).strftime("%Y-%m-%d %H:%M %Z").to_string()
    }

    fn runs(expr: &str, from: &str, tz: &str, n: usize) -> Vec<String> {
        let cron = Cron::parse(expr).unwrap();
        let zone = TimeZone::get(tz).unwrap();
        let mut t = at(from, tz);
        (0..n)
            .map(|_| {
                t = cron.next_after(t, &zone).unwrap();
                local(t, tz)
            })
            .collect()
    }

    #[test]
    fn parses_what_cron_accepts_and_explains_the_rest() {
        for ok in ["* * * * *", "0 9 * * 1-5", "*/15 0-6,22 1,15 jan-mar MON", "0 0 * * 7", "5/20 * * * *"] {
            assert!(Cron::parse(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("* * * *", "4 fields"),
            ("60 * * * *", "field 1"),
            ("* 24 * * *", "field 2"),
            ("* * 0 * *", "field 3"),
            ("* * * 13 *", "field 4"),
            ("* * * * 8", "field 5"),
            ("*/0 * * * *", "bad step"),
            ("5-1 * * * *", "field 1"),
            ("* * * * funday", "field 5"),
        ] {
            let e = Cron::parse(bad).unwrap_err();
            assert!(e.contains(says) && e.contains("e.g."), "{bad}: {e}");
        }
    }

    #[test]
    fn next_runs_follow_the_schedule() {
        assert_eq!(
            runs("0 9 * * 1-5", "2026-12-04 10:00", "Europe/Berlin", 3),
            ["2026-12-07 09:00 CET", "2026-12-08 09:00 CET", "2026-12-09 09:00 CET"],
            "weekdays at 9, from a Friday after 9"
        );
        assert_eq!(
            runs("*/20 * * * *", "2026-01-01 00:00", "UTC", 3),
            ["2026-01-01 00:20 UTC", "2026-01-01 00:40 UTC", "2026-01-01 01:00 UTC"]
        );
        // Either day field matches when both are restricted (the 13th, or any Friday).
        assert_eq!(
            runs("0 12 13 * fri", "2026-02-01 00:00", "UTC", 3),
            ["2026-02-06 12:00 UTC", "2026-02-13 12:00 UTC", "2026-02-20 12:00 UTC"]
        );
        assert_eq!(runs("0 0 29 2 *", "2026-03-01 00:00", "UTC", 1), ["2028-02-29 00:00 UTC"]);
        assert_eq!(
            runs("0 0 * * 0", "2026-11-30 00:00", "UTC", 1),
            runs("0 0 * * 7", "2026-11-30 00:00", "UTC", 1)
        );
        assert!(
            Cron::parse("0 0 30 2 *").unwrap().next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC).is_none()
        );
    }

    #[test]
    fn spring_forward_runs_the_missing_time_once_after_the_gap() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29.
        assert_eq!(
            runs("30 2 * * *", "2026-03-28 12:00", "Europe/Berlin", 3),
            ["2026-03-29 03:30 CEST", "2026-03-30 02:30 CEST", "2026-03-31 02:30 CEST"]
        );
        // Every 15 minutes: the gap's wall times are not run, nothing twice.
        assert_eq!(
            runs("*/15 * * * *", "2026-03-29 01:40", "Europe/Berlin", 4),
            [
                "2026-03-29 01:45 CET",
                "2026-03-29 03:00 CEST",
                "2026-03-29 03:15 CEST",
                "2026-03-29 03:30 CEST"
            ]
        );
        // A daily 9:00 stays at 9:00 local across the change (the UTC time moves).
        let r = runs("0 9 * * *", "2026-03-28 10:00", "Europe/Berlin", 2);
        assert_eq!(r, ["2026-03-29 09:00 CEST", "2026-03-30 09:00 CEST"]);
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // America/New_York repeats 01:00-02:00 on 2026-11-01.
        assert_eq!(
            runs("30 1 * * *", "2026-10-31 12:00", "America/New_York", 2),
            ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]
        );
        assert_eq!(
            runs("0 * * * *", "2026-11-01 00:30", "America/New_York", 3),
            ["2026-11-01 01:00 EDT", "2026-11-01 02:00 EST", "2026-11-01 03:00 EST"]
        );
    }
}
