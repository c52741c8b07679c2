//! How error messages show text they received: quoted like `{:?}`, but
//! never unbounded. A definition can carry a megabyte-long id or a cycle
//! through thousands of tasks, and an error message travels in a gRPC
//! header, which clients refuse past a few kilobytes; so a long value is
//! cut and its size stated, and a long cycle is listed in part.

/// Characters of one value shown in a message: every valid id (64) and
/// handler (128) is shown whole, so only invalid input is ever cut.
pub const SHOWN_CHARS: usize = 128;

/// Tasks of a cycle listed in a message before the rest is counted.
pub const SHOWN_CYCLE_TASKS: usize = 16;

/// `text` quoted as `{:?}` does, cut after [`SHOWN_CHARS`] characters with
/// its full size stated, e.g. `"aaaa"…(1048576 bytes)`.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}…({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// A cycle as `a -> b -> c -> a`; one of more than [`SHOWN_CYCLE_TASKS`]
/// tasks shows the first ones, then how many more lead back to the start.
pub(crate) fn shown_cycle(cycle: &[String]) -> String {
    // The path repeats its first task at the end.
    let tasks = cycle.len().saturating_sub(1);
    if tasks <= SHOWN_CYCLE_TASKS {
        return cycle
            .iter()
            .map(|id| shown_id(id))
            .collect::<Vec<_>>()
            .join(" -> ");
    }
    let listed: Vec<String> = cycle[..SHOWN_CYCLE_TASKS]
        .iter()
        .map(|id| shown_id(id))
        .collect();
    format!(
        "{} -> … {} more tasks … -> {} ({tasks} tasks in the cycle)",
        listed.join(" -> "),
        tasks - SHOWN_CYCLE_TASKS,
        shown_id(&cycle[0]),
    )
}

/// Ids in a cycle are valid identifiers, printed bare; the cut is only a
/// guard.
fn shown_id(id: &str) -> String {
    match id.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…({} bytes)", &id[..cut], id.len()),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole_and_long_text_is_cut_with_its_size() {
        assert_eq!(shown("a\"b"), r#""a\"b""#);
        let long = "x".repeat(1 << 20);
        let message = shown(&long);
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with("…(1048576 bytes)"), "{message}");
        assert_eq!(
            shown(&"é".repeat(SHOWN_CHARS)),
            format!("{:?}", "é".repeat(SHOWN_CHARS))
        );
    }

    #[test]
    fn a_long_cycle_is_listed_in_part_with_its_length() {
        let short: Vec<String> = ["a", "b", "a"].map(String::from).to_vec();
        assert_eq!(shown_cycle(&short), "a -> b -> a");
        let mut long: Vec<String> = (0..3_000).map(|n| format!("t{n:04}")).collect();
        long.push("t0000".to_owned());
        let message = shown_cycle(&long);
        assert!(message.len() < 300, "{message}");
        assert!(message.starts_with("t0000 -> t0001 -> "), "{message}");
        assert!(
            message.ends_with("-> … 2984 more tasks … -> t0000 (3000 tasks in the cycle)"),
            "{message}"
        );
    }
}
