//! The worker's log (`CONFORMANCE_LOG`): one JSON object per line, and what
//! the runner derives from it (executions per attempt, concurrency per
//! process, cancellations that reached the handler's code).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// What a log line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The handler's code was entered.
    Start,
    /// The handler's code returned or threw.
    End,
    /// The handler's code observed its cancellation.
    Cancelled,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    /// What happened.
    pub event: EventKind,
    /// The handler, without the `conformance.` prefix.
    pub handler: String,
    /// The attempt's id.
    pub attempt_id: String,
    /// The worker process's id.
    pub pid: u32,
}

/// The handlers' common prefix; log lines may carry it or not.
const HANDLER_PREFIX: &str = "conformance.";

/// Parses the log. A last line without its newline is being written and is
/// left for the next read; any other line that is not a log event is an
/// error naming its number.
pub fn parse_log(text: &str) -> Result<Vec<LogEvent>, String> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let mut event: LogEvent = serde_json::from_str(line).map_err(|error| {
                format!(
                    "log line {} is not a log event ({error}): {}",
                    index + 1,
                    crate::json::brief(line, 200)
                )
            })?;
            if let Some(short) = event.handler.strip_prefix(HANDLER_PREFIX) {
                event.handler = short.to_owned();
            }
            Ok(event)
        })
        .collect()
}

/// The events of `kind` for `handler`.
pub fn events<'a>(
    log: &'a [LogEvent],
    kind: EventKind,
    handler: &'a str,
) -> impl Iterator<Item = &'a LogEvent> + 'a {
    log.iter()
        .filter(move |event| event.event == kind && event.handler == handler)
}

/// Whether the log shows `kind` for `attempt_id`.
pub fn has(log: &[LogEvent], kind: EventKind, attempt_id: &str) -> bool {
    log.iter()
        .any(|event| event.event == kind && event.attempt_id == attempt_id)
}

/// For each process, the most attempts that had a `start` without their
/// `end` at one time.
pub fn max_concurrency(log: &[LogEvent]) -> BTreeMap<u32, usize> {
    let mut open: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    let mut most: BTreeMap<u32, usize> = BTreeMap::new();
    for event in log {
        let running = open.entry(event.pid).or_default();
        match event.event {
            EventKind::Start => {
                running.insert(&event.attempt_id);
            }
            EventKind::End => {
                running.remove(event.attempt_id.as_str());
            }
            EventKind::Cancelled => {}
        }
        let peak = most.entry(event.pid).or_default();
        *peak = (*peak).max(running.len());
    }
    most
}

/// Problems in the pairing of `start` and `end`: an attempt started twice in
/// one process, or ended without having started there.
pub fn pairing_errors(log: &[LogEvent]) -> Vec<String> {
    let mut open: BTreeSet<(u32, &str)> = BTreeSet::new();
    let mut errors = Vec::new();
    for event in log {
        let key = (event.pid, event.attempt_id.as_str());
        match event.event {
            EventKind::Start if !open.insert(key) => errors.push(format!(
                "attempt {} started twice in process {}",
                event.attempt_id, event.pid
            )),
            EventKind::End if !open.remove(&key) => errors.push(format!(
                "attempt {} ended in process {} without a start",
                event.attempt_id, event.pid
            )),
            _ => {}
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(event: &str, handler: &str, attempt: &str, pid: u32) -> String {
        format!(
            r#"{{"event":"{event}","handler":"{handler}","attempt_id":"{attempt}","pid":{pid}}}"#
        )
    }

    fn log_of(lines: &[String]) -> Vec<LogEvent> {
        parse_log(&(lines.join("\n") + "\n")).expect("parses")
    }

    #[test]
    fn parses_lines_and_strips_the_handler_prefix() {
        let text = line("start", "conformance.sleep", "a1", 7)
            + "\n"
            + &line("end", "sleep", "a1", 7)
            + "\n";
        let log = parse_log(&text).expect("parses");
        assert_eq!(
            log,
            vec![
                LogEvent {
                    event: EventKind::Start,
                    handler: "sleep".into(),
                    attempt_id: "a1".into(),
                    pid: 7
                },
                LogEvent {
                    event: EventKind::End,
                    handler: "sleep".into(),
                    attempt_id: "a1".into(),
                    pid: 7
                },
            ]
        );
    }

    #[test]
    fn a_partial_last_line_waits_and_a_bad_line_is_named() {
        let text = line("start", "echo", "a1", 1) + "\n" + r#"{"event":"en"#;
        assert_eq!(parse_log(&text).expect("parses").len(), 1);
        let bad = line("start", "echo", "a1", 1) + "\nnot json\n";
        let error = parse_log(&bad).unwrap_err();
        assert!(
            error.starts_with("log line 2 is not a log event"),
            "{error}"
        );
        let unknown = line("begin", "echo", "a1", 1) + "\n";
        assert!(parse_log(&unknown).is_err());
    }

    #[test]
    fn concurrency_is_counted_per_process() {
        let log = log_of(&[
            line("start", "sleep", "a", 1),
            line("start", "sleep", "b", 1),
            line("start", "sleep", "c", 2),
            line("end", "sleep", "a", 1),
            line("start", "sleep", "d", 1),
            line("start", "sleep", "e", 1),
            line("cancelled", "sleep", "e", 1),
            line("end", "sleep", "b", 1),
            line("end", "sleep", "d", 1),
            line("end", "sleep", "e", 1),
            line("end", "sleep", "c", 2),
        ]);
        let most = max_concurrency(&log);
        assert_eq!(most.get(&1), Some(&3));
        assert_eq!(most.get(&2), Some(&1));
        assert!(pairing_errors(&log).is_empty());
    }

    #[test]
    fn the_same_attempt_in_two_processes_is_two_executions() {
        let log = log_of(&[
            line("start", "sleep", "a", 1),
            line("start", "sleep", "a", 2),
            line("end", "sleep", "a", 2),
        ]);
        assert_eq!(events(&log, EventKind::Start, "sleep").count(), 2);
        assert_eq!(max_concurrency(&log).get(&1), Some(&1));
        assert!(pairing_errors(&log).is_empty());
    }

    #[test]
    fn pairing_errors_name_the_attempt() {
        let log = log_of(&[
            line("start", "echo", "a", 1),
            line("start", "echo", "a", 1),
            line("end", "echo", "z", 1),
        ]);
        assert_eq!(
            pairing_errors(&log),
            [
                "attempt a started twice in process 1",
                "attempt z ended in process 1 without a start"
            ]
        );
    }

    #[test]
    fn has_finds_an_event_of_an_attempt() {
        let log = log_of(&[
            line("start", "wait_cancel", "a", 1),
            line("cancelled", "wait_cancel", "a", 1),
        ]);
        assert!(has(&log, EventKind::Cancelled, "a"));
        assert!(!has(&log, EventKind::End, "a"));
        assert!(!has(&log, EventKind::Cancelled, "b"));
    }
}
