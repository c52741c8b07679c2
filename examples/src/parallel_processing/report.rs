//! What the example prints on stdout once the run is over: the run's
//! status (and every task's when not all succeeded), the per-category stats
//! table, the tutorial's parallel-efficiency figure, and the measured
//! wall-clock figures.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::PARTITION_TASKS;
use super::followup::{CategoryTotals, StatsByCategory};
use crate::runner::{self, Attempt, Finished};

/// What `generate_data` sleeps before the partitions can start.
const LOAD_SLEEP_MS: u64 = 500;

/// The whole report; `sleeps` says whether the tutorial's sleeps were on.
pub fn render(finished: &Finished, sleeps: bool) -> String {
    let mut out = String::new();
    let run = &finished.run;
    if run
        .tasks
        .iter()
        .all(|task| task.state == tributary::TaskState::Succeeded)
    {
        let _ = writeln!(
            out,
            "Run {} of {} (version {}): {}",
            run.id,
            run.workflow_name,
            finished.version,
            runner::status_name(run.status)
        );
        let _ = writeln!(out, "All {} tasks succeeded.", run.tasks.len());
    } else {
        out.push_str(&runner::task_table(run));
    }
    out.push('\n');
    render_stats(&mut out, &run.context);
    out.push('\n');
    render_figures(&mut out, finished, sleeps);
    out
}

fn render_stats(out: &mut String, context: &Value) {
    let Some(stats) = context
        .get("final_stats")
        .and_then(|stats| serde_json::from_value::<StatsByCategory>(stats.clone()).ok())
    else {
        let _ = writeln!(out, "The run's context has no final_stats.");
        return;
    };
    let mut rows: Vec<(&String, &CategoryTotals)> = stats.iter().collect();
    rows.sort_by_key(|(category, _)| natural_key(category));
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>12} {:>18}",
        "Category", "Products", "Stock", "Value"
    );
    let mut total = CategoryTotals::default();
    let mut total_stock: u64 = 0;
    for (category, row) in rows {
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>12} {:>18}",
            category,
            grouped(u64::from(row.product_count)),
            grouped(u64::from(row.total_stock)),
            money(row.total_value)
        );
        total.product_count += row.product_count;
        total_stock += u64::from(row.total_stock);
        total.total_value += row.total_value;
    }
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>12} {:>18}",
        "All",
        grouped(u64::from(total.product_count)),
        grouped(total_stock),
        money(total.total_value)
    );
}

fn render_figures(out: &mut String, finished: &Finished, sleeps: bool) {
    let context = &finished.run.context;
    let times: Option<Vec<u64>> = (1..=3)
        .map(|n| {
            context
                .get(format!("processing_time_{n}"))
                .and_then(Value::as_u64)
        })
        .collect();
    let efficiency = context
        .get("parallel_efficiency_percent")
        .and_then(Value::as_f64);
    let slowest = times.as_ref().and_then(|times| times.iter().copied().max());
    match (&times, slowest, efficiency) {
        (Some(times), Some(slowest), Some(efficiency)) => {
            let _ = writeln!(
                out,
                "Parallel efficiency (the tutorial's figure, from its simulated times): \
                 {} = {} ms of processing, the longest {slowest} ms: {efficiency:.1}%",
                times
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" + "),
                times.iter().sum::<u64>(),
            );
            if !sleeps {
                let _ = writeln!(
                    out,
                    "  (--no-sleep: those times were drawn at random, not slept; the tasks' \
                     log lines say so with slept=false)"
                );
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "Parallel efficiency: n/a, the partitions did not all finish"
            );
        }
    }

    match partition_overlap(&finished.attempts) {
        Some((work, span)) if sleeps && !span.is_zero() => {
            let _ = writeln!(
                out,
                "Measured parallel efficiency (worker clock): the partitions ran {} ms \
                 of processing in {} ms of wall clock: {:.1}%",
                milliseconds(work),
                milliseconds(span),
                work.as_secs_f64() / span.as_secs_f64() * 100.0
            );
        }
        Some((work, span)) => {
            // Without the sleeps each partition is a few milliseconds of
            // work, less than it takes to hand the next one out, so their
            // overlap says nothing about parallelism.
            let _ = writeln!(
                out,
                "Measured: the partitions ran {} ms of processing in {} ms of wall clock \
                 (--no-sleep: too little work for a parallel-efficiency figure to mean \
                 anything; run without --no-sleep for one)",
                milliseconds(work),
                milliseconds(span),
            );
        }
        None => {
            let _ = writeln!(out, "Measured parallel efficiency: n/a");
        }
    }

    let _ = write!(
        out,
        "Wall time: {} ms from StartRun until the run was seen finished",
        milliseconds(finished.elapsed)
    );
    if let Some(span) = finished.task_span() {
        let _ = write!(
            out,
            ", {} ms from the first task's start to the last one's end",
            milliseconds(span)
        );
    }
    out.push('\n');
    if let (true, Some(slowest), Some(span)) = (sleeps, slowest, finished.task_span()) {
        let floor = LOAD_SLEEP_MS + slowest;
        let _ = writeln!(
            out,
            "  the sleeps alone take {LOAD_SLEEP_MS} ms + the slowest partition's {slowest} ms \
             = {floor} ms; the rest, {} ms, is Tributary and the tasks' own work",
            milliseconds(span.saturating_sub(Duration::from_millis(floor)))
        );
    }
}

/// The partitions' summed durations and the span from the first start to
/// the last end, from the worker's clock; `None` unless all three
/// succeeded.
pub fn partition_overlap(attempts: &[Attempt]) -> Option<(Duration, Duration)> {
    let attempts: Vec<&Attempt> = PARTITION_TASKS
        .iter()
        .map(|task_id| {
            attempts
                .iter()
                .rev()
                .find(|attempt| attempt.task_id == *task_id && attempt.succeeded)
        })
        .collect::<Option<_>>()?;
    let first_start = attempts.iter().map(|attempt| attempt.started).min()?;
    let last_end = attempts.iter().map(|attempt| attempt.finished).max()?;
    let work = attempts.iter().map(|attempt| attempt.duration()).sum();
    Some((work, last_end - first_start))
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// Sorts `Category 2` before `Category 10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem.to_owned(), number.parse().unwrap_or(0))
}

/// `1234567` -> `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `1234567.891` -> `1,234,567.89`.
fn money(value: f64) -> String {
    let cents = (value * 100.0).round();
    let sign = if cents < 0.0 { "-" } else { "" };
    let cents = cents.abs() as u64;
    format!("{sign}{}.{:02}", grouped(cents / 100), cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(0.5), "0.50");
        assert_eq!(money(-12.0), "-12.00");
    }

    #[test]
    fn categories_sort_by_their_number() {
        let mut names = vec!["Category 10", "Category 2", "Category 1", "Other"];
        names.sort_by_key(|name| natural_key(name));
        assert_eq!(names, ["Category 1", "Category 2", "Category 10", "Other"]);
    }
}
