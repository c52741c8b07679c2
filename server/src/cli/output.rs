//! What the client commands print for people: lines on stdout that end the
//! command quietly when the reader has gone (`run get ID | head`), times in
//! RFC 3339 UTC, durations like `350ms` or `1.2s`, and tables whose columns
//! are as wide as their widest cell.

use std::io::Write;

use super::CliError;

/// Writes one line to stdout. A closed pipe becomes
/// [`CliError::ClosedOutput`], which ends the command quietly with status 0
/// instead of the panic `println!` would raise.
pub fn emit(line: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::ClosedOutput),
        Err(error) => Err(CliError::Output(error)),
    }
}

/// `say!("...", args)`: [`emit`] a formatted line, returning early on error.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::emit(&format!($($arg)*))?
    };
}
pub(crate) use say;

/// `2026-12-01T20:50:14Z`: an instant in milliseconds since the epoch, in
/// UTC, to the second.
pub fn time(unix_ms: i64) -> String {
    let (date, seconds_of_day) = civil(unix_ms.div_euclid(1000));
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// `2026-12-01T20:50:14.123Z`: [`time`] to the millisecond.
pub fn time_ms(unix_ms: i64) -> String {
    let seconds = time(unix_ms);
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        unix_ms.rem_euclid(1000)
    )
}

/// The date (`YYYY-MM-DD`) and the second of the day of a Unix time in
/// seconds (Howard Hinnant's `civil_from_days`).
fn civil(unix_seconds: i64) -> (String, i64) {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), seconds_of_day)
}

/// `350ms`, `1.2s`, `2m05s`, `3h07m`: a duration in milliseconds, as
/// precise as a person reading it needs.
pub fn duration(milliseconds: i64) -> String {
    let ms = milliseconds.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `12 B`, `4.0 KiB`, `1.5 MiB`.
pub fn bytes(count: usize) -> String {
    const KIB: f64 = 1024.0;
    let count_f = count as f64;
    if count < 1024 {
        format!("{count} B")
    } else if count_f < KIB * KIB {
        format!("{:.1} KiB", count_f / KIB)
    } else {
        format!("{:.1} MiB", count_f / (KIB * KIB))
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    crate::clock::now_unix_ms()
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table printed with columns as wide as their widest cell, two spaces
/// apart; the last column is not padded, so long errors do not push
/// trailing blanks.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table's lines, header first.
    pub fn lines(&self) -> Vec<String> {
        let cell = |row: &[String], index: usize| row.get(index).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(header, _)| header.chars().count())
            .collect();
        for row in &self.rows {
            for (index, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, index).chars().count());
            }
        }
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|(header, _)| (*header).to_owned())
            .collect();
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| {
                let last = self.columns.len().saturating_sub(1);
                let mut line = String::new();
                for (index, (_, align)) in self.columns.iter().enumerate() {
                    let text = cell(row, index);
                    let pad = widths[index].saturating_sub(text.chars().count());
                    if index > 0 {
                        line.push_str("  ");
                    }
                    match align {
                        Align::Right => {
                            line.push_str(&" ".repeat(pad));
                            line.push_str(&text);
                        }
                        Align::Left if index == last => line.push_str(&text),
                        Align::Left => {
                            line.push_str(&text);
                            line.push_str(&" ".repeat(pad));
                        }
                    }
                }
                line.trim_end().to_owned()
            })
            .collect()
    }

    /// Prints the table.
    pub fn emit(&self) -> Result<(), CliError> {
        for line in self.lines() {
            emit(&line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_utc() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(time(1_796_157_014_123), "2026-12-01T20:30:14Z");
        assert_eq!(time_ms(1_796_157_014_123), "2026-12-01T20:30:14.123Z");
        assert_eq!(time_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(350), "350ms");
        assert_eq!(duration(1_234), "1.2s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(11_220_000), "3h07m");
        assert_eq!(duration(-5), "0ms");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[
            ("TASK", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("ERROR", Align::Left),
        ]);
        table.row(vec!["a_rather_long_task_id".into(), "12".into(), "".into()]);
        table.row(vec!["b".into(), "1".into(), "boom".into()]);
        assert_eq!(
            table.lines(),
            [
                "TASK                   ATTEMPTS  ERROR",
                "a_rather_long_task_id        12",
                "b                             1  boom",
            ]
        );
    }
}
