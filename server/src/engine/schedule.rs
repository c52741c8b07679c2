//! A schedule's definition as the engine knows it: the cron expression read
//! in an IANA time zone, and the overlap and catch-up policies. Parsing and
//! the fire-time arithmetic live here; which fire times are due, and what a
//! fire does, are in `schedule_plan.rs`.
//!
//! The cron grammar is croner's with 5 fields (minute, hour, day of month,
//! month, day of week; no seconds, no year), plus its `@hourly`-style
//! nicknames and its `L`, `W` and `#` extensions. Daylight saving time
//! follows croner (the Open Cron Pattern Specification):
//! - a local time that does not exist (the clock springs forward over it)
//!   fires, for a pattern with a fixed minute and hour, at the first instant
//!   after the gap, the same day; a pattern with a wildcard or a step in its
//!   minute or hour fields skips the times in the gap;
//! - a local time that happens twice (the clock falls back) fires, for a
//!   pattern with a fixed minute and hour, once, at its first occurrence; a
//!   pattern with a wildcard or a step fires at every real instant it
//!   matches, in both passes.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tributary_core::shown;

/// Longest cron parse error reason shown.
const MAX_REASON_CHARS: usize = 200;

/// Most missed fire times `CATCH_UP_ALL` may start after downtime.
pub const MAX_CATCH_UP_LIMIT: u32 = 100;

/// What happens to a fire while the schedule's previous run is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// The fire is dropped.
    Skip,
    /// The fire waits for the active run to end; at most one waits.
    Queue,
    /// The fire starts a run anyway.
    Allow,
}

/// Which fire times missed while the server was down are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpPolicy {
    /// None: only a fire time that is on time starts a run.
    None,
    /// The latest missed one only.
    Last,
    /// Every missed one, oldest first, but at most the latest `max` of them.
    All { max: u32 },
}

/// Why a schedule's definition is refused; each names its culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleSpecError {
    #[error("invalid cron expression {}: {reason}", shown(expression))]
    Cron { expression: String, reason: String },
    #[error("cron expression {} never fires", shown(.0))]
    NeverFires(String),
    #[error("unknown time zone {}: expected an IANA name such as Europe/Paris or UTC", shown(.0))]
    TimeZone(String),
    #[error(
        "max_catch_up {value} is out of range: CATCH_UP_ALL needs 1-{MAX_CATCH_UP_LIMIT}, the other policies 0"
    )]
    MaxCatchUp { value: u32 },
}

/// A cron expression in a time zone: the fire times of a schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (5 fields) for the IANA zone `zone`; refuses an
    /// expression that matches no time at all.
    pub fn parse(expression: &str, zone: &str) -> Result<CronSchedule, ScheduleSpecError> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| ScheduleSpecError::TimeZone(zone.to_owned()))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| ScheduleSpecError::Cron {
                expression: expression.to_owned(),
                // croner's reasons may quote the pattern: bounded like it.
                reason: error.to_string().chars().take(MAX_REASON_CHARS).collect(),
            })?;
        let schedule = CronSchedule { cron, zone };
        if schedule.next_after(0).is_none() {
            return Err(ScheduleSpecError::NeverFires(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// The first fire time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = self.local(after_ms)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|time| time.timestamp_millis())
    }

    /// Fire times at or before `at_ms`, newest first, as long as `more`
    /// wants them.
    pub fn at_or_before(&self, at_ms: i64) -> impl Iterator<Item = i64> + '_ {
        let mut cursor = self
            .local(at_ms)
            .and_then(|start| self.cron.find_previous_occurrence(&start, true).ok());
        std::iter::from_fn(move || {
            let current = cursor.take()?;
            cursor = self.cron.find_previous_occurrence(&current, false).ok();
            Some(current.timestamp_millis())
        })
    }

    /// The next `count` fire times strictly after `after_ms`, oldest first.
    pub fn upcoming(&self, after_ms: i64, count: usize) -> Vec<i64> {
        let mut times = Vec::with_capacity(count);
        let mut after = after_ms;
        while times.len() < count {
            match self.next_after(after) {
                Some(next) => {
                    times.push(next);
                    after = next;
                }
                None => break,
            }
        }
        times
    }

    fn local(&self, unix_ms: i64) -> Option<DateTime<Tz>> {
        let utc: DateTime<Utc> = Utc.timestamp_millis_opt(unix_ms).single()?;
        Some(utc.with_timezone(&self.zone))
    }
}

/// Checks that `max_catch_up` fits its policy and builds the policy.
pub fn catch_up_policy(
    kind: CatchUpKind,
    max_catch_up: u32,
) -> Result<CatchUpPolicy, ScheduleSpecError> {
    match kind {
        CatchUpKind::None if max_catch_up == 0 => Ok(CatchUpPolicy::None),
        CatchUpKind::Last if max_catch_up == 0 => Ok(CatchUpPolicy::Last),
        CatchUpKind::All if (1..=MAX_CATCH_UP_LIMIT).contains(&max_catch_up) => {
            Ok(CatchUpPolicy::All { max: max_catch_up })
        }
        _ => Err(ScheduleSpecError::MaxCatchUp {
            value: max_catch_up,
        }),
    }
}

/// A catch-up policy without its bound, as a client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpKind {
    None,
    Last,
    All,
}

impl CatchUpPolicy {
    pub fn kind(self) -> CatchUpKind {
        match self {
            CatchUpPolicy::None => CatchUpKind::None,
            CatchUpPolicy::Last => CatchUpKind::Last,
            CatchUpPolicy::All { .. } => CatchUpKind::All,
        }
    }

    pub fn max_catch_up(self) -> u32 {
        match self {
            CatchUpPolicy::All { max } => max,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .timestamp_millis()
    }

    fn rfc3339(unix_ms: i64) -> String {
        Utc.timestamp_millis_opt(unix_ms)
            .single()
            .expect("valid")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn upcoming(expression: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
        CronSchedule::parse(expression, zone)
            .expect("parses")
            .upcoming(utc_ms(after), count)
            .into_iter()
            .map(rfc3339)
            .collect()
    }

    #[test]
    fn fires_in_the_schedules_time_zone() {
        assert_eq!(
            upcoming("30 9 * * *", "Europe/Paris", "2026-01-10T00:00:00Z", 2),
            ["2026-01-10T08:30:00Z", "2026-01-11T08:30:00Z"]
        );
        assert_eq!(
            upcoming("*/15 * * * *", "UTC", "2026-01-10T00:00:00Z", 3),
            [
                "2026-01-10T00:15:00Z",
                "2026-01-10T00:30:00Z",
                "2026-01-10T00:45:00Z"
            ]
        );
    }

    #[test]
    fn a_nonexistent_local_time_fires_at_the_first_instant_after_the_gap() {
        // Paris springs forward on 2026-03-29 from 02:00 to 03:00 local.
        assert_eq!(
            upcoming("30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", 2),
            [
                // 03:00 local (UTC+2), the first instant after the gap.
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
    }

    #[test]
    fn an_interval_pattern_skips_the_times_in_the_gap() {
        assert_eq!(
            upcoming("30 * * * *", "Europe/Paris", "2026-03-28T23:45:00Z", 3),
            [
                "2026-03-29T00:30:00Z", // 01:30 local, UTC+1
                "2026-03-29T01:30:00Z", // 03:30 local, UTC+2: 02:30 never existed
                "2026-03-29T02:30:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_local_time_fires_once_at_its_first_occurrence() {
        // Paris falls back on 2026-10-25 from 03:00 to 02:00 local.
        assert_eq!(
            upcoming("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", 2),
            [
                // 02:30 local in summer time (UTC+2); not again at UTC+1.
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z"
            ]
        );
    }

    #[test]
    fn an_interval_pattern_fires_in_both_passes_of_a_repeated_hour() {
        assert_eq!(
            upcoming("30 * * * *", "Europe/Paris", "2026-10-24T23:45:00Z", 3),
            [
                "2026-10-25T00:30:00Z", // 02:30 local, first pass
                "2026-10-25T01:30:00Z", // 02:30 local, second pass
                "2026-10-25T02:30:00Z"  // 03:30 local
            ]
        );
    }

    #[test]
    fn looks_back_from_a_time_newest_first_including_it() {
        let schedule = CronSchedule::parse("0 * * * *", "UTC").expect("parses");
        let times: Vec<String> = schedule
            .at_or_before(utc_ms("2026-01-10T03:00:00Z"))
            .take(3)
            .map(rfc3339)
            .collect();
        assert_eq!(
            times,
            [
                "2026-01-10T03:00:00Z",
                "2026-01-10T02:00:00Z",
                "2026-01-10T01:00:00Z"
            ]
        );
    }

    #[test]
    fn refuses_seconds_bad_fields_unknown_zones_and_impossible_dates() {
        for expression in ["0 * * * * *", "61 * * * *", "* * *", "", "every day"] {
            let error = CronSchedule::parse(expression, "UTC").expect_err(expression);
            assert!(
                matches!(error, ScheduleSpecError::Cron { .. }),
                "{expression}: {error}"
            );
            assert!(error.to_string().contains("invalid cron expression"));
        }
        assert_eq!(
            CronSchedule::parse("* * * * *", "Mars/Olympus")
                .expect_err("zone")
                .to_string(),
            "unknown time zone \"Mars/Olympus\": expected an IANA name such as Europe/Paris or UTC"
        );
        assert_eq!(
            CronSchedule::parse("0 0 30 2 *", "UTC")
                .expect_err("February 30")
                .to_string(),
            "cron expression \"0 0 30 2 *\" never fires"
        );
        assert!(CronSchedule::parse("@hourly", "UTC").is_ok());
    }

    #[test]
    fn max_catch_up_must_fit_its_policy() {
        assert_eq!(
            catch_up_policy(CatchUpKind::All, 5),
            Ok(CatchUpPolicy::All { max: 5 })
        );
        assert_eq!(
            catch_up_policy(CatchUpKind::Last, 0),
            Ok(CatchUpPolicy::Last)
        );
        for (kind, value) in [
            (CatchUpKind::All, 0),
            (CatchUpKind::All, MAX_CATCH_UP_LIMIT + 1),
            (CatchUpKind::None, 1),
            (CatchUpKind::Last, 3),
        ] {
            assert_eq!(
                catch_up_policy(kind, value),
                Err(ScheduleSpecError::MaxCatchUp { value })
            );
        }
    }
}
