//! `#[task]` and `workflow!`: what they generate. The compile errors for
//! bad attributes are tested in the tributary-macros crate (trybuild).

use tributary::{Context, TaskError, task};

#[task(
    id = "every_setting",
    dependencies = ["a", "b"],
    retry_attempts = 3,
    retry_delay_ms = 250,
    retry_backoff = "linear",
    retry_max_delay_ms = 5000,
    retry_jitter = false,
    timeout_ms = 60000,
    trigger_rule = "all_done",
    handler = "billing.charge:v2",
    required_labels = [("region", "eu"), ("gpu", "true")],
    max_in_flight = 4
)]
async fn every_setting(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    context.insert("ran", true)?;
    Ok(())
}

#[task(
    id = "fan",
    map_over = "items",
    map_output = "out",
    map_max_instances = 50
)]
async fn fan(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

#[task(id = "a")]
async fn a(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    Ok(())
}

#[task]
async fn b(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let n: i64 = context.get("n")?;
    context.insert("n2", n * 2)?;
    Ok(())
}

mod nested {
    use tributary::{Context, TaskError, task};

    #[task(id = "c", dependencies = ["a", "b"])]
    pub async fn c(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
        Err(TaskError::fatal("no"))
    }
}

#[test]
fn task_generates_the_definition() {
    let task = every_setting_task();
    let definition = task.definition();
    assert_eq!(
        definition,
        &tributary::TaskDefinition {
            id: "every_setting".into(),
            dependencies: vec!["a".into(), "b".into()],
            retry_attempts: Some(3),
            retry_delay_ms: Some(250),
            retry_backoff: "linear".into(),
            retry_max_delay_ms: Some(5000),
            retry_jitter: Some(false),
            timeout_ms: Some(60000),
            trigger_rule: "all_done".into(),
            handler: "billing.charge:v2".into(),
            required_labels: [
                ("gpu".to_owned(), "true".to_owned()),
                ("region".to_owned(), "eu".to_owned())
            ]
            .into(),
            max_in_flight: Some(4),
            ..Default::default()
        }
    );
    assert_eq!(
        fan_task().definition(),
        &tributary::TaskDefinition {
            id: "fan".into(),
            map_over: "items".into(),
            map_output: "out".into(),
            map_max_instances: Some(50),
            ..Default::default()
        }
    );
    let plain = a_task();
    assert_eq!(
        plain.definition(),
        &tributary::TaskDefinition {
            id: "a".into(),
            ..Default::default()
        }
    );
    // Without `id`, the function's name is the id.
    assert_eq!(b_task().id(), "b");
}

#[tokio::test]
async fn the_generated_handler_calls_the_function() {
    let mut context = Context::from_value(serde_json::json!({"n": 21})).expect("object");
    (b_task().handler())(&mut context).await.expect("runs");
    assert_eq!(context.get::<i64>("n2"), Ok(42));
    // The function itself is kept and callable.
    let mut context = Context::new();
    every_setting(&mut context).await.expect("runs");
    assert!(context.contains("ran"));
    let error = (nested::c_task().handler())(&mut Context::new())
        .await
        .unwrap_err();
    assert!(!error.is_retryable());
}

#[test]
fn workflow_groups_tasks_by_function_name_and_path() {
    let workflow = tributary::workflow!("grouped", [a, b, nested::c]);
    assert_eq!(workflow.name(), "grouped");
    let ids: Vec<&str> = workflow.tasks().iter().map(|task| task.id()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    workflow.validate().expect("valid");
    let handlers: Vec<String> = workflow.handlers().map(|(name, _)| name).collect();
    assert_eq!(handlers, ["grouped.a", "grouped.b", "grouped.c"]);
    let broken = tributary::workflow!("broken", [nested::c]);
    assert_eq!(
        broken.validate().unwrap_err().to_string(),
        "task \"c\" depends on unknown task \"a\""
    );
}
