//! The shared validation vectors (`tests/vectors/validation.json`): local
//! validation must accept and reject exactly what the server does, with the
//! server's messages.

use serde::Deserialize;
use tributary::WorkflowDefinition;

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    definition: serde_json::Value,
    error: Option<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    code: String,
    message: String,
}

#[test]
fn local_validation_matches_the_servers_messages() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/validation.json");
    let text = std::fs::read_to_string(&path).expect("vectors exist");
    let vectors: Vectors = serde_json::from_str(&text).expect("vectors parse");
    assert!(vectors.cases.len() > 10);
    let mut checked = 0;
    for case in vectors.cases {
        let definition: WorkflowDefinition = serde_json::from_value(case.definition.clone())
            .unwrap_or_else(|error| panic!("{}: {error}", case.name));
        let outcome = definition.validate();
        match (&case.error, outcome) {
            (None, Ok(())) => {}
            (None, Err(error)) => panic!("{}: rejected with {error}", case.name),
            (Some(expected), Ok(())) => {
                panic!("{}: accepted, expected {}", case.name, expected.message)
            }
            (Some(expected), Err(error)) => {
                assert_eq!(expected.code, "INVALID_ARGUMENT", "{}", case.name);
                assert_eq!(error.to_string(), expected.message, "{}", case.name);
            }
        }
        checked += 1;
    }
    assert!(checked > 10);
}
