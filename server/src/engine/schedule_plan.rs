//! Which fire times of a schedule are due, and what each does: pure
//! decisions the scheduler carries out.
//!
//! A schedule keeps a cursor, the latest fire time it has dealt with
//! (started, skipped, queued or let go). At time `now`, the due fire times
//! are those after the cursor and at or before `now`. One of them is *on
//! time* when `now` is less than [`ON_TIME_WINDOW_MS`] past it (a scheduler
//! that is up wakes within that); the others were *missed*, while the
//! server was down. The catch-up policy picks which due times fire; the
//! cursor then moves to the latest due time whatever was picked, so a time
//! is never dealt with twice. Cron has minute granularity, so at most one
//! due time is on time.

use super::schedule::{CatchUpPolicy, CronSchedule, OverlapPolicy};

/// How late a fire time may be dealt with and still count as on time.
pub const ON_TIME_WINDOW_MS: i64 = 60_000;

/// The due fire times of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DueFires {
    /// The times the catch-up policy starts, oldest first.
    pub fire: Vec<i64>,
    /// The latest due time, the schedule's new cursor; `None` when nothing
    /// is due.
    pub through_ms: Option<i64>,
}

/// The fire times due after `cursor_ms` up to `now_ms`, as `catch_up`
/// picks them. Looks at no more than the policy can fire, however long
/// the server was down.
pub fn due_fires(
    schedule: &CronSchedule,
    cursor_ms: i64,
    now_ms: i64,
    catch_up: CatchUpPolicy,
) -> DueFires {
    if now_ms <= cursor_ms {
        return DueFires::default();
    }
    let mut due = schedule
        .at_or_before(now_ms)
        .take_while(|time| *time > cursor_ms);
    let Some(latest) = due.next() else {
        return DueFires::default();
    };
    let on_time = now_ms - latest < ON_TIME_WINDOW_MS;
    let fire = match catch_up {
        CatchUpPolicy::None if on_time => vec![latest],
        CatchUpPolicy::None => Vec::new(),
        CatchUpPolicy::Last => vec![latest],
        CatchUpPolicy::All { max } => {
            let missed = if on_time {
                due.take(max as usize).collect::<Vec<_>>()
            } else {
                std::iter::once(latest)
                    .chain(due)
                    .take(max as usize)
                    .collect()
            };
            let mut fire: Vec<i64> = missed.into_iter().rev().collect();
            if on_time {
                fire.push(latest);
            }
            fire
        }
    };
    DueFires {
        fire,
        through_ms: Some(latest),
    }
}

/// What the scheduler knows of a schedule's runs when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OverlapState {
    /// The run the schedule started last is still pending or running.
    pub previous_active: bool,
    /// A fire time waiting (QUEUE) for that run to end.
    pub queued_ms: Option<i64>,
}

/// One decision about one fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireStep {
    /// Start a run for this fire time.
    Start(i64),
    /// Drop this fire time: the previous run is active.
    Skip(i64),
    /// Keep this fire time until the previous run ends.
    Queue(i64),
}

/// Decides each fire in order: first the queued fire, which starts once the
/// previous run has ended, then every due time. A run started here counts
/// as active for the fires after it. Returns the steps and the fire time
/// still queued afterwards.
pub fn plan_fires(
    overlap: OverlapPolicy,
    state: OverlapState,
    due: &[i64],
) -> (Vec<FireStep>, Option<i64>) {
    let mut steps = Vec::with_capacity(due.len() + 1);
    let mut active = state.previous_active;
    let mut queued = state.queued_ms;
    if let Some(time) = queued
        && !active
    {
        steps.push(FireStep::Start(time));
        queued = None;
        active = true;
    }
    for &time in due {
        let step = match overlap {
            _ if !active => FireStep::Start(time),
            OverlapPolicy::Allow => FireStep::Start(time),
            OverlapPolicy::Skip => FireStep::Skip(time),
            OverlapPolicy::Queue if queued.is_none() => FireStep::Queue(time),
            OverlapPolicy::Queue => FireStep::Skip(time),
        };
        match step {
            FireStep::Start(_) => active = true,
            FireStep::Queue(time) => queued = Some(time),
            FireStep::Skip(_) => {}
        }
        steps.push(step);
    }
    (steps, queued)
}

/// The idempotency key of the run a fire starts: the same fire time of the
/// same schedule always names the same run, across restarts.
pub fn fire_idempotency_key(schedule_id: &str, fire_rfc3339_utc: &str) -> String {
    format!("schedule:{schedule_id}:{fire_rfc3339_utc}")
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::FireStep::{Queue, Skip, Start};
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .timestamp_millis()
    }

    fn shown(times: &[i64]) -> Vec<String> {
        times
            .iter()
            .map(|time| {
                Utc.timestamp_millis_opt(*time)
                    .single()
                    .expect("valid")
                    .format("%H:%M:%S")
                    .to_string()
            })
            .collect()
    }

    fn hourly() -> CronSchedule {
        CronSchedule::parse("0 * * * *", "UTC").expect("parses")
    }

    fn due(cursor: &str, now: &str, catch_up: CatchUpPolicy) -> (Vec<String>, Option<String>) {
        let due = due_fires(&hourly(), at(cursor), at(now), catch_up);
        (
            shown(&due.fire),
            due.through_ms.map(|time| shown(&[time])[0].clone()),
        )
    }

    const ALL_POLICIES: [CatchUpPolicy; 3] = [
        CatchUpPolicy::None,
        CatchUpPolicy::Last,
        CatchUpPolicy::All { max: 10 },
    ];

    #[test]
    fn nothing_is_due_before_the_next_fire_time() {
        for policy in ALL_POLICIES {
            assert_eq!(
                due("2026-01-10T01:00:00Z", "2026-01-10T01:59:59Z", policy),
                (vec![], None)
            );
            // A clock that went back is not a reason to fire.
            assert_eq!(
                due("2026-01-10T01:00:00Z", "2026-01-10T00:30:00Z", policy),
                (vec![], None)
            );
        }
    }

    #[test]
    fn a_fire_time_on_time_fires_under_every_policy() {
        for policy in ALL_POLICIES {
            for now in ["2026-01-10T02:00:00Z", "2026-01-10T02:00:59.999Z"] {
                assert_eq!(
                    due("2026-01-10T01:00:00Z", now, policy),
                    (vec!["02:00:00".to_owned()], Some("02:00:00".to_owned())),
                    "{policy:?} at {now}"
                );
            }
        }
    }

    #[test]
    fn the_fire_time_itself_is_due_but_the_cursor_is_not() {
        assert_eq!(
            due(
                "2026-01-10T02:00:00Z",
                "2026-01-10T02:00:30Z",
                CatchUpPolicy::Last
            ),
            (vec![], None)
        );
    }

    #[test]
    fn after_downtime_none_fires_nothing_but_moves_the_cursor() {
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T04:30:00Z",
                CatchUpPolicy::None
            ),
            (vec![], Some("04:00:00".to_owned()))
        );
        // One minute late is missed.
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T02:01:00Z",
                CatchUpPolicy::None
            ),
            (vec![], Some("02:00:00".to_owned()))
        );
    }

    #[test]
    fn after_downtime_last_fires_the_latest_missed_time() {
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T04:30:00Z",
                CatchUpPolicy::Last
            ),
            (vec!["04:00:00".to_owned()], Some("04:00:00".to_owned()))
        );
    }

    #[test]
    fn after_downtime_all_fires_every_missed_time_oldest_first() {
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T04:30:00Z",
                CatchUpPolicy::All { max: 10 }
            ),
            (
                vec!["02:00:00".into(), "03:00:00".into(), "04:00:00".into()],
                Some("04:00:00".to_owned())
            )
        );
    }

    #[test]
    fn all_is_bounded_to_the_latest_missed_times_plus_the_one_on_time() {
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T06:30:00Z",
                CatchUpPolicy::All { max: 2 }
            ),
            (
                vec!["05:00:00".into(), "06:00:00".into()],
                Some("06:00:00".to_owned())
            )
        );
        assert_eq!(
            due(
                "2026-01-10T01:00:00Z",
                "2026-01-10T06:00:10Z",
                CatchUpPolicy::All { max: 2 }
            ),
            (
                vec!["04:00:00".into(), "05:00:00".into(), "06:00:00".into()],
                Some("06:00:00".to_owned())
            )
        );
    }

    #[test]
    fn a_year_of_downtime_looks_at_no_more_than_the_bound() {
        let minutely = CronSchedule::parse("* * * * *", "UTC").expect("parses");
        let due = due_fires(
            &minutely,
            at("2025-01-01T00:00:00Z"),
            at("2026-01-01T00:00:30Z"),
            CatchUpPolicy::All { max: 3 },
        );
        assert_eq!(
            shown(&due.fire),
            ["23:57:00", "23:58:00", "23:59:00", "00:00:00"]
        );
        assert_eq!(due.through_ms, Some(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn without_an_active_run_every_policy_starts() {
        for overlap in [
            OverlapPolicy::Skip,
            OverlapPolicy::Queue,
            OverlapPolicy::Allow,
        ] {
            assert_eq!(
                plan_fires(overlap, OverlapState::default(), &[10]),
                (vec![Start(10)], None)
            );
        }
    }

    #[test]
    fn with_an_active_run_skip_drops_allow_starts_and_queue_keeps_one() {
        let active = OverlapState {
            previous_active: true,
            queued_ms: None,
        };
        assert_eq!(
            plan_fires(OverlapPolicy::Skip, active, &[10, 20]),
            (vec![Skip(10), Skip(20)], None)
        );
        assert_eq!(
            plan_fires(OverlapPolicy::Allow, active, &[10, 20]),
            (vec![Start(10), Start(20)], None)
        );
        assert_eq!(
            plan_fires(OverlapPolicy::Queue, active, &[10, 20]),
            (vec![Queue(10), Skip(20)], Some(10))
        );
    }

    #[test]
    fn a_queued_fire_starts_once_the_previous_run_ended_and_then_counts_as_active() {
        let ended = OverlapState {
            previous_active: false,
            queued_ms: Some(10),
        };
        assert_eq!(
            plan_fires(OverlapPolicy::Queue, ended, &[20, 30]),
            (vec![Start(10), Queue(20), Skip(30)], Some(20))
        );
        let still_active = OverlapState {
            previous_active: true,
            queued_ms: Some(10),
        };
        assert_eq!(
            plan_fires(OverlapPolicy::Queue, still_active, &[]),
            (vec![], Some(10))
        );
        assert_eq!(
            plan_fires(OverlapPolicy::Queue, still_active, &[20]),
            (vec![Skip(20)], Some(10))
        );
    }

    #[test]
    fn caught_up_fires_overlap_with_each_other() {
        let idle = OverlapState::default();
        assert_eq!(
            plan_fires(OverlapPolicy::Skip, idle, &[10, 20, 30]),
            (vec![Start(10), Skip(20), Skip(30)], None)
        );
        assert_eq!(
            plan_fires(OverlapPolicy::Queue, idle, &[10, 20, 30]),
            (vec![Start(10), Queue(20), Skip(30)], Some(20))
        );
        assert_eq!(
            plan_fires(OverlapPolicy::Allow, idle, &[10, 20, 30]),
            (vec![Start(10), Start(20), Start(30)], None)
        );
    }

    #[test]
    fn the_idempotency_key_names_the_schedule_and_the_fire_time() {
        assert_eq!(
            fire_idempotency_key("nightly", "2026-01-10T02:00:00Z"),
            "schedule:nightly:2026-01-10T02:00:00Z"
        );
    }
}
