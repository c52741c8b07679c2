//! Validation and normalization: defaults, versions, cycles, identifiers and
//! limits.

use tributary_core::{
    Backoff, DefinitionError, DefinitionLimits, RetryPolicy, TaskDefinition, TriggerRule,
    WorkflowDefinition, WorkflowSpec, is_valid_handler, is_valid_identifier, validate,
};

fn task(id: &str, dependencies: &[&str]) -> TaskDefinition {
    TaskDefinition {
        id: id.to_owned(),
        dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        ..TaskDefinition::default()
    }
}

fn workflow(tasks: Vec<TaskDefinition>) -> WorkflowDefinition {
    WorkflowDefinition {
        name: "wf".to_owned(),
        description: String::new(),
        tasks,
        concurrency: None,
    }
}

fn check(input: &WorkflowDefinition) -> Result<WorkflowSpec, DefinitionError> {
    validate(input, 0, DefinitionLimits::default())
}

#[test]
fn defaults_are_filled_in_and_tasks_sorted() {
    let spec = check(&workflow(vec![task("b", &["a"]), task("a", &[])])).expect("valid");
    assert_eq!(spec.tasks[0].id, "a");
    assert_eq!(spec.tasks[1].id, "b");
    let b = &spec.tasks[1];
    assert_eq!(
        b.retry,
        RetryPolicy {
            attempts: 0,
            delay_ms: 1000,
            backoff: Backoff::Exponential,
            max_delay_ms: 30_000,
            jitter: true
        }
    );
    assert_eq!(b.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(b.handler, "wf.b");
    assert_eq!(b.timeout_ms, None);
}

#[test]
fn version_ignores_task_and_dependency_order_but_not_content() {
    let one = check(&workflow(vec![
        task("c", &["a", "b"]),
        task("a", &[]),
        task("b", &[]),
    ]))
    .expect("valid");
    let two = check(&workflow(vec![
        task("a", &[]),
        task("b", &[]),
        task("c", &["b", "a"]),
    ]))
    .expect("valid");
    assert_eq!(one.version(), two.version());
    assert_eq!(one.version().len(), 16);
    let mut changed = workflow(vec![task("a", &[]), task("b", &[]), task("c", &["b", "a"])]);
    changed.tasks[0].retry_attempts = Some(1);
    assert_ne!(check(&changed).expect("valid").version(), one.version());
}

#[test]
fn explicit_defaults_hash_like_unset_ones() {
    let implicit = check(&workflow(vec![task("a", &[])])).expect("valid");
    let mut explicit_task = task("a", &[]);
    explicit_task.retry_attempts = Some(0);
    explicit_task.retry_delay_ms = Some(1000);
    explicit_task.retry_backoff = "exponential".to_owned();
    explicit_task.retry_max_delay_ms = Some(30_000);
    explicit_task.retry_jitter = Some(true);
    explicit_task.trigger_rule = "all_success".to_owned();
    explicit_task.handler = "wf.a".to_owned();
    let explicit = check(&workflow(vec![explicit_task])).expect("valid");
    assert_eq!(implicit.version(), explicit.version());
}

#[test]
fn normalized_spec_round_trips_through_input_and_json() {
    let spec = check(&workflow(vec![task("b", &["a"]), task("a", &[])])).expect("valid");
    let again = check(&WorkflowDefinition::from(&spec)).expect("valid");
    assert_eq!(spec, again);
    let stored = WorkflowSpec::from_canonical_json(&spec.canonical_json()).expect("parses");
    assert_eq!(stored, spec);
}

#[test]
fn cycle_is_reported_with_its_path() {
    let error = check(&workflow(vec![
        task("a", &["c"]),
        task("b", &["a"]),
        task("c", &["b"]),
        task("d", &[]),
    ]))
    .expect_err("cycle");
    assert_eq!(error.to_string(), "cycle detected: a -> b -> c -> a");
}

#[test]
fn two_node_cycle_inside_a_larger_graph() {
    let error = check(&workflow(vec![
        task("root", &[]),
        task("x", &["root", "y"]),
        task("y", &["x", "w"]),
        task("w", &["root"]),
        task("z", &["y"]),
    ]))
    .expect_err("cycle");
    assert_eq!(
        error,
        DefinitionError::Cycle(vec!["x".into(), "y".into(), "x".into()])
    );
}

#[test]
fn long_chain_and_wide_fan_out_are_valid() {
    let chain: Vec<_> = (0..10_000)
        .map(|i| {
            if i == 0 {
                task("t0", &[])
            } else {
                task(&format!("t{i}"), &[&format!("t{}", i - 1)])
            }
        })
        .collect();
    assert!(check(&workflow(chain)).is_ok());
    let mut fan: Vec<_> = (0..10_000)
        .map(|i| task(&format!("s{i}"), &["root"]))
        .collect();
    fan.push(task("root", &[]));
    let ids: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let mut fan_in = task("sink", &[]);
    fan_in.dependencies = ids;
    fan.push(fan_in);
    assert!(check(&workflow(fan)).is_ok());
}

#[test]
fn identifiers() {
    for valid in ["a", "a1", "a_b-c", &"a".repeat(64)] {
        assert!(is_valid_identifier(valid), "{valid}");
    }
    for invalid in ["", "1a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
        assert!(!is_valid_identifier(invalid), "{invalid}");
    }
}

#[test]
fn limits_name_the_limit_and_the_excess() {
    let limits = DefinitionLimits {
        max_tasks: 2,
        max_definition_bytes: 100,
    };
    let three = workflow(vec![task("a", &[]), task("b", &[]), task("c", &[])]);
    let error = validate(&three, 10, limits).expect_err("too many");
    assert_eq!(
        error.to_string(),
        "workflow \"wf\" has 3 tasks, over the limit of 2 by 1"
    );
    assert!(error.is_limit());
    let error = validate(&workflow(vec![task("a", &[])]), 150, limits).expect_err("too big");
    assert_eq!(
        error.to_string(),
        "workflow \"wf\" definition is 150 bytes, over the limit of 100 bytes by 50"
    );
}

#[test]
fn explicit_delay_above_default_cap_raises_the_cap() {
    let mut slow = task("a", &[]);
    slow.retry_delay_ms = Some(60_000);
    let spec = check(&workflow(vec![slow])).expect("valid");
    assert_eq!(spec.tasks[0].retry.max_delay_ms, 60_000);
}

/// Stored versions must stay valid across releases, so the canonical form and
/// its hash are pinned (the hash computed independently of this crate).
#[test]
fn canonical_form_and_version_are_pinned() {
    let spec = check(&workflow(vec![task("a", &[])])).expect("valid");
    assert_eq!(
        spec.canonical_json(),
        r#"{"name":"wf","description":"","tasks":[{"id":"a","dependencies":[],"retry":{"attempts":0,"delay_ms":1000,"backoff":"exponential","max_delay_ms":30000,"jitter":true},"timeout_ms":null,"trigger_rule":"all_success","handler":"wf.a"}]}"#
    );
    assert_eq!(spec.version(), "d4d07d2abcfcdeb0");
}

/// Required labels are part of the version, and only when there are some:
/// a definition without them keeps the version pinned above.
#[test]
fn required_labels_enter_the_version_only_when_present() {
    let plain = check(&workflow(vec![task("a", &[])])).expect("valid");
    let mut gpu = task("a", &[]);
    gpu.required_labels = [("gpu".to_owned(), "true".to_owned())].into();
    let labeled = check(&workflow(vec![gpu])).expect("valid");
    assert!(
        labeled
            .canonical_json()
            .ends_with(r#""handler":"wf.a","required_labels":{"gpu":"true"}}]}"#),
        "{}",
        labeled.canonical_json()
    );
    assert_ne!(labeled.version(), plain.version());
    let stored = WorkflowSpec::from_canonical_json(&labeled.canonical_json()).expect("parses");
    assert_eq!(stored, labeled);
    assert_eq!(
        WorkflowSpec::from_canonical_json(&plain.canonical_json()).expect("parses"),
        plain
    );
}

/// A concurrency policy is part of the version, and only when there is one:
/// a definition without it keeps the version pinned above. Its canonical form
/// is pinned too, since stored versions must stay valid.
#[test]
fn concurrency_enters_the_version_only_when_present() {
    let plain = check(&workflow(vec![task("a", &[])])).expect("valid");
    let mut limited = workflow(vec![task("a", &[])]);
    limited.concurrency = Some(tributary_core::ConcurrencyDefinition {
        key_pointer: "/customer".to_owned(),
        ..Default::default()
    });
    let limited = check(&limited).expect("valid");
    assert!(
        limited.canonical_json().ends_with(
            r#""handler":"wf.a"}],"concurrency":{"key":{"pointer":"/customer"},"max_active_runs":1,"strategy":"queue"}}"#
        ),
        "{}",
        limited.canonical_json()
    );
    assert_ne!(limited.version(), plain.version());
    assert_eq!(plain.version(), "d4d07d2abcfcdeb0");
    let stored = WorkflowSpec::from_canonical_json(&limited.canonical_json()).expect("parses");
    assert_eq!(stored, limited);
    // The explicit form of a spec validates back to the same spec.
    let explicit = tributary_core::WorkflowDefinition::from(&limited);
    assert_eq!(check(&explicit).expect("valid"), limited);
}

#[test]
fn handler_names() {
    for valid in [
        "a",
        "Billing.charge:v2",
        "team/etl-load_1",
        &"h".repeat(128),
    ] {
        assert!(is_valid_handler(valid), "{valid}");
    }
    for invalid in ["", "a b", "a\u{e9}", "a*", &"h".repeat(129)] {
        assert!(!is_valid_handler(invalid), "{invalid}");
    }
    let mut bad = task("a", &[]);
    bad.handler = "no spaces".to_owned();
    assert_eq!(
        check(&workflow(vec![bad]))
            .expect_err("bad handler")
            .to_string(),
        "task \"a\": invalid handler \"no spaces\": must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /"
    );
}

#[test]
fn client_validation_skips_only_the_limits() {
    let many: Vec<_> = (0..3).map(|i| task(&format!("t{i}"), &[])).collect();
    let limits = DefinitionLimits {
        max_tasks: 2,
        max_definition_bytes: 1,
    };
    assert!(validate(&workflow(many.clone()), 0, limits).is_err());
    assert_eq!(workflow(many).validate(), Ok(()));
    let mut cyclic = workflow(vec![task("a", &["b"]), task("b", &["a"])]);
    assert_eq!(
        cyclic.validate(),
        Err(DefinitionError::Cycle(vec![
            "a".into(),
            "b".into(),
            "a".into()
        ]))
    );
    cyclic.name = "Bad".to_owned();
    assert_eq!(
        cyclic.validate(),
        Err(DefinitionError::InvalidWorkflowName("Bad".into()))
    );
}

#[test]
fn definitions_read_strictly() {
    let unknown = serde_json::from_str::<WorkflowDefinition>(
        r#"{"name": "w", "tasks": [{"id": "a", "retries": 3}]}"#,
    )
    .expect_err("unknown field");
    assert!(unknown.to_string().contains("retries"), "{unknown}");
    let minimal: WorkflowDefinition =
        serde_json::from_str(r#"{"name": "w", "tasks": [{"id": "a"}]}"#).expect("minimal");
    assert_eq!(minimal.tasks[0], task("a", &[]));
}
