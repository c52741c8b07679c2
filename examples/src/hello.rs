//! The smallest workflow: one task that reads `name` from the run's input
//! and writes a greeting into the context.

use serde_json::json;
use tributary::{Context, Run, TaskError, Workflow, task, workflow};

use tributary::ShutdownReport;

use crate::runner::{self, ExampleError, Finished, ServerArgs};
use crate::serving::{self, Serve};

#[task(id = "say_hello")]
async fn say_hello(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let name: String = context.get("name")?;
    context.insert("greeting", format!("Hello, {name}!"))?;
    Ok(())
}

/// The workflow `hello`: the single task `say_hello`.
pub fn workflow() -> Workflow {
    workflow!("hello", [say_hello])
}

/// Runs the workflow once with `{"name": name}` as input.
pub async fn run(server: &ServerArgs, name: &str) -> Result<Finished, ExampleError> {
    runner::run_once(server, &workflow(), json!({ "name": name }), 1).await
}

/// Serves `say_hello` against `--server` until SIGTERM or SIGINT, starting
/// no run: runs started elsewhere (`tributary run start hello --input
/// '{"name": "Ada"}'`) are served here.
pub async fn serve_only(server: &ServerArgs) -> Result<ShutdownReport, ExampleError> {
    serving::serve_workflow(server, &workflow(), 1, &Serve::All).await
}

/// The greeting in the run's final context.
pub fn greeting(run: &Run) -> Option<&str> {
    run.context.get("greeting")?.as_str()
}
