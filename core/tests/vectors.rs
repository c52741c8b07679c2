//! The shared vectors (`tests/vectors/validation.json`) are the contract
//! every SDK's local validation follows; this validator, which the server
//! runs, must agree with them exactly.

use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};

#[test]
fn shared_validation_vectors() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/validation.json");
    let text = std::fs::read_to_string(&path).expect("vectors exist");
    let vectors: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(cases.len() > 10);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let input: WorkflowDefinition =
            serde_json::from_value(case["definition"].clone()).expect(name);
        let result = validate(&input, 0, DefinitionLimits::default());
        // What a client checks (no limits) must agree with what the server
        // checks on every case within the default limits.
        assert_eq!(input.validate(), result.clone().map(|_| ()), "{name}");
        match case["error"].as_object() {
            None => assert!(result.is_ok(), "{name}: {result:?}"),
            Some(error) => {
                assert_eq!(error["code"], "INVALID_ARGUMENT", "{name}");
                let message = result.expect_err(name).to_string();
                assert_eq!(
                    message,
                    error["message"].as_str().expect("message"),
                    "{name}"
                );
            }
        }
    }
}
