//! Fuzzing definition parsing and validation (see `fuzz/mutate.rs`): any
//! bytes either fail to parse as a definition or validate to a spec or an
//! error; nothing panics, every error message is bounded, and a valid
//! definition round-trips through its spec to the same version.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use std::path::Path;

use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};

/// Longest error message any definition may produce: values are shown cut
/// at 128 characters and cycles at 16 tasks.
const MAX_ERROR_BYTES: usize = 4_096;

fn check(bytes: &[u8]) {
    let Ok(definition) = serde_json::from_slice::<WorkflowDefinition>(bytes) else {
        return;
    };
    let limits = DefinitionLimits {
        max_tasks: 5_000,
        max_definition_bytes: 1024 * 1024,
    };
    match validate(&definition, bytes.len(), limits) {
        Ok(spec) => {
            let again = WorkflowDefinition::from(&spec);
            let respec =
                validate(&again, bytes.len(), limits).expect("a spec's definition is valid");
            assert_eq!(respec.version(), spec.version());
            assert_eq!(respec.canonical_json(), spec.canonical_json());
            assert_eq!(definition.validate(), Ok(()));
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.len() <= MAX_ERROR_BYTES,
                "a {} byte error: {}",
                message.len(),
                &message[..200]
            );
        }
    }
}

#[test]
fn definitions_parse_and_validate_without_panics_and_with_bounded_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seeds = mutate::corpus(&root, "definition");
    mutate::fuzz(&seeds, check);
}
