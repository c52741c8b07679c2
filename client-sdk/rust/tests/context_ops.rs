//! The shared Context-operation vectors (`tests/vectors/context_ops.json`):
//! insert, update, upsert and remove give the same data, delta and errors
//! as in every SDK, with integers beyond 2^64 kept exactly through the raw
//! methods.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use tributary::{Context, ContextError};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input: Box<RawValue>,
    ops: Vec<Operation>,
    data: BTreeMap<String, Box<RawValue>>,
    set: BTreeMap<String, Box<RawValue>>,
    removed: Vec<String>,
    errors: Vec<Option<String>>,
}

#[derive(Deserialize)]
struct Operation {
    op: String,
    key: String,
    value: Option<Box<RawValue>>,
}

/// JSON text without the whitespace between tokens, so that values from
/// the file compare by their exact digits whatever their layout.
fn compact(text: &str) -> String {
    let mut compacted = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for character in text.chars() {
        if in_string {
            compacted.push(character);
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !character.is_whitespace() {
            compacted.push(character);
            in_string = character == '"';
        }
    }
    compacted
}

fn texts<'a>(entries: impl Iterator<Item = (&'a str, String)>) -> BTreeMap<String, String> {
    entries
        .map(|(key, text)| (key.to_owned(), compact(&text)))
        .collect()
}

#[test]
fn context_operations_match_the_shared_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/context_ops.json");
    let text = std::fs::read_to_string(&path).expect("vectors exist");
    let vectors: Vectors = serde_json::from_str(&text).expect("vectors parse");
    assert!(vectors.cases.len() >= 10);
    for case in vectors.cases {
        let mut context = Context::from_json(case.input.get()).expect("input is an object");
        let mut errors = Vec::new();
        for operation in case.ops {
            let value = || operation.value.clone().expect("the op has a value");
            let outcome = match operation.op.as_str() {
                "insert" => context.insert_raw(operation.key.clone(), value()),
                "update" => context.update_raw(operation.key.clone(), value()),
                "upsert" => {
                    context.upsert_raw(operation.key.clone(), value());
                    Ok(())
                }
                "remove" => {
                    context.discard(&operation.key);
                    Ok(())
                }
                other => panic!("{}: unknown op {other}", case.name),
            };
            errors.push(match outcome {
                Ok(()) => None,
                Err(ContextError::KeyExists { .. }) => Some("key_exists".to_owned()),
                Err(ContextError::KeyNotFound { .. }) => Some("key_missing".to_owned()),
                Err(error) => panic!("{}: {error}", case.name),
            });
        }
        let raw = |key: &str| context.get_raw(key).expect("present").get().to_owned();
        let data = texts(context.keys().map(|key| (key, raw(key))));
        let (set, removed) = context.delta();
        let set = texts(set.keys().map(|key| (key.as_str(), raw(key))));
        let expected = |values: &BTreeMap<String, Box<RawValue>>| {
            texts(
                values
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.get().to_owned())),
            )
        };
        assert_eq!(data, expected(&case.data), "{}: data", case.name);
        assert_eq!(set, expected(&case.set), "{}: set", case.name);
        assert_eq!(
            removed.into_iter().collect::<Vec<_>>(),
            case.removed,
            "{}: removed",
            case.name
        );
        assert_eq!(errors, case.errors, "{}: errors", case.name);
    }
}
