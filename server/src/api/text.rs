//! Checks on text that reaches the database. Postgres cannot store U+0000 in
//! text and SQLite can, so the API refuses it wherever it could reach a
//! column or a query, the same on both, with a message naming the field.

use super::error::{ApiError, ApiResult};

/// Refuses `value` if it contains U+0000.
pub fn check_no_nul(field: &str, value: &str) -> ApiResult<()> {
    if value.contains('\0') {
        return Err(ApiError::InvalidArgument(format!(
            "{field} contains U+0000, which the server does not store"
        )));
    }
    Ok(())
}

/// Refuses text over `max_bytes` or containing U+0000, naming the field.
pub fn check_text(field: &str, value: &str, max_bytes: usize) -> ApiResult<()> {
    if value.len() > max_bytes {
        return Err(ApiError::InvalidArgument(format!(
            "{field} is {} bytes, over the limit of {max_bytes}",
            value.len()
        )));
    }
    check_no_nul(field, value)
}

/// At most 64 characters of untrusted text, quoted, for an error message.
pub fn quoted_prefix(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Cuts `text` to at most `max_bytes`, at a character boundary.
pub fn truncate_at_char(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_naming_the_field() {
        let error = check_no_nul("idempotency_key", "a\0b").expect_err("refused");
        assert_eq!(
            error.to_string(),
            "idempotency_key contains U+0000, which the server does not store"
        );
        assert!(check_no_nul("run_id", "0193").is_ok());
    }

    #[test]
    fn long_text_is_quoted_in_part_and_cut_at_a_character() {
        let quoted = quoted_prefix(&"é".repeat(1_000));
        assert!(quoted.ends_with("..."));
        assert!(quoted.chars().count() < 80);
        assert_eq!(truncate_at_char("aé".into(), 2), "a");
    }
}
