//! `hello`: one task, its greeting in the final context.

use tributary::{RunStatus, TaskState};
use tributary_examples::hello;
use tributary_examples::runner::ServerArgs;

use crate::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_greets_by_name() {
    let finished = within("the run", hello::run(&ServerArgs::default(), "Ada"))
        .await
        .expect("the example runs");
    assert_eq!(
        finished.run.status,
        RunStatus::Succeeded,
        "{:#?}",
        finished.run
    );
    assert_eq!(hello::greeting(&finished.run), Some("Hello, Ada!"));
    let task = finished.run.task("say_hello").expect("the task");
    assert_eq!((task.state, task.attempts.len()), (TaskState::Succeeded, 1));
}
