//! JSON values compared exactly: numbers are kept as decimal digits and an
//! exponent, never rounded through floating point, so `18446744073709551617`
//! and `18446744073709551616` differ while `1e-7` and `0.0000001` are equal.
//!
//! The runner does not turn on serde_json's `arbitrary_precision` (it would
//! change `serde_json` for every crate built with it); it walks the text with
//! `RawValue` instead and reads numbers from their text.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::value::RawValue;

/// A JSON value with exact numbers; objects compare regardless of key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object (a duplicated key keeps its last value, as JSON parsers do).
    Object(BTreeMap<String, Json>),
}

/// An exact number: `(-1)^negative × digits × 10^exponent`, with no leading
/// or trailing zero in `digits`; zero is empty digits, not negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Json {
    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Json, String> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;
        Json::from_raw(raw)
    }

    fn from_raw(raw: &RawValue) -> Result<Json, String> {
        let text = raw.get().trim();
        let invalid = |error: serde_json::Error| format!("invalid JSON: {error}");
        match text.as_bytes().first() {
            Some(b'{') => {
                let object: BTreeMap<String, &RawValue> =
                    serde_json::from_str(text).map_err(invalid)?;
                object
                    .into_iter()
                    .map(|(key, value)| Ok((key, Json::from_raw(value)?)))
                    .collect::<Result<_, String>>()
                    .map(Json::Object)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
                items
                    .into_iter()
                    .map(Json::from_raw)
                    .collect::<Result<_, String>>()
                    .map(Json::Array)
            }
            Some(b'"') => serde_json::from_str(text)
                .map(Json::String)
                .map_err(invalid),
            Some(b't' | b'f') => serde_json::from_str(text).map(Json::Bool).map_err(invalid),
            Some(b'n') => Ok(Json::Null),
            Some(_) => Number::parse(text).map(Json::Number),
            None => Err("invalid JSON: empty text".to_owned()),
        }
    }

    /// The value under `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.get(key),
            _ => None,
        }
    }

    /// The value as a `u64`, when it is a non-negative integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(number) if !number.negative && number.exponent >= 0 => {
                let zeros = usize::try_from(number.exponent).ok()?;
                format!("{}{}", number.digits, "0".repeat(zeros))
                    .parse()
                    .ok()
                    .or((number.digits.is_empty()).then_some(0))
            }
            _ => None,
        }
    }

    /// Compact JSON text, cut to about `limit` bytes (failure messages must
    /// not echo megabytes).
    pub fn brief(&self, limit: usize) -> String {
        brief(&self.to_string(), limit)
    }
}

/// `text` cut at a character boundary near `limit` bytes, with the length it
/// had.
pub fn brief(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

impl Number {
    /// Reads a JSON number's text.
    pub fn parse(text: &str) -> Result<Number, String> {
        let invalid = || format!("invalid JSON number {}", brief(text, 40));
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => {
                let exponent = unsigned[at + 1..].trim_start_matches('+');
                (
                    &unsigned[..at],
                    exponent.parse::<i64>().map_err(|_| invalid())?,
                )
            }
            None => (unsigned, 0),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if integer.is_empty()
            || !integer.bytes().all(|byte| byte.is_ascii_digit())
            || !fraction.bytes().all(|byte| byte.is_ascii_digit())
        {
            return Err(invalid());
        }
        let fraction_digits = i64::try_from(fraction.len()).map_err(|_| invalid())?;
        let mut digits = format!("{integer}{fraction}");
        let mut exponent = exponent - fraction_digits;
        let trimmed = digits.trim_end_matches('0');
        exponent += i64::try_from(digits.len() - trimmed.len()).map_err(|_| invalid())?;
        digits.truncate(trimmed.len());
        let digits = digits.trim_start_matches('0').to_owned();
        if digits.is_empty() {
            return Ok(Number {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        Ok(Number {
            negative,
            digits,
            exponent,
        })
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        if self.exponent == 0 {
            f.write_str(&self.digits)
        } else {
            write!(f, "{}e{}", self.digits, self.exponent)
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(value) => write!(f, "{value}"),
            Json::Number(number) => write!(f, "{number}"),
            Json::String(text) => {
                f.write_str(&serde_json::to_string(text).map_err(|_| fmt::Error)?)
            }
            Json::Array(items) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Json::Object(members) => {
                f.write_str("{")?;
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    let key = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                    write!(f, "{key}:{value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        Json::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn big_integers_are_exact() {
        assert_eq!(parse("18446744073709551617"), parse("18446744073709551617"));
        assert_ne!(parse("18446744073709551617"), parse("18446744073709551616"));
        assert_ne!(
            parse("-340282366920938463463374607431768211457"),
            parse("-340282366920938463463374607431768211456")
        );
        // Through f64 these would be equal.
        assert_ne!(parse("9007199254740993"), parse("9007199254740992"));
    }

    #[test]
    fn equal_numbers_written_differently_are_equal() {
        assert_eq!(parse("1e-7"), parse("0.0000001"));
        assert_eq!(parse("1E-07"), parse("1e-7"));
        assert_eq!(parse("1.0"), parse("1"));
        assert_eq!(parse("100"), parse("1e2"));
        assert_eq!(parse("-0"), parse("0.0"));
        assert_eq!(parse("1.50e+1"), parse("15"));
        assert_ne!(parse("1.0000000000000002"), parse("1"));
        assert_ne!(parse("-1"), parse("1"));
        assert_eq!(
            parse("123456789012345678901234567890.123456789"),
            parse("1234567890123456789012345678901234567.89e-7")
        );
    }

    #[test]
    fn objects_compare_regardless_of_key_order_and_whitespace() {
        assert_eq!(
            parse(r#"{"a": 1, "b": [true, null, "x"]}"#),
            parse(r#"{"b":[true,null,"x"],"a":1}"#)
        );
        assert_ne!(parse(r#"{"a": 1}"#), parse(r#"{"a": 1, "b": 2}"#));
        assert_ne!(parse("[1, 2]"), parse("[2, 1]"));
        assert_ne!(parse(r#""1""#), parse("1"));
    }

    #[test]
    fn strings_and_keys_are_decoded() {
        assert_eq!(
            parse(r#"{"\u00e9t\u00e9": "\ud83d\ude00"}"#),
            parse(r#"{"été": "😀"}"#)
        );
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(Json::parse("{").is_err());
        assert!(Json::parse("").is_err());
        assert!(Json::parse("01x").is_err());
    }

    #[test]
    fn small_integers_read_as_u64() {
        assert_eq!(parse("10000002").as_u64(), Some(10_000_002));
        assert_eq!(parse("1e3").as_u64(), Some(1000));
        assert_eq!(parse("0").as_u64(), Some(0));
        assert_eq!(parse("1.5").as_u64(), None);
        assert_eq!(parse("-1").as_u64(), None);
        assert_eq!(parse("18446744073709551617").as_u64(), None);
    }

    #[test]
    fn display_is_compact_and_brief_cuts() {
        assert_eq!(
            parse(r#"{"b": [1.50, -0], "a": "x"}"#).to_string(),
            r#"{"a":"x","b":[15e-1,0]}"#
        );
        assert_eq!(brief("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(brief("abc", 3), "abc");
    }
}
