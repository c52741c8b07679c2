//! Tasks and workflows: definitions (what the server stores) together with
//! handlers (what a worker runs). `#[task]` generates a [`Task`];
//! [`workflow!`](crate::workflow!) or [`Workflow::new`] groups them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tributary_core::{ConcurrencyDefinition, DefinitionError, TaskDefinition, WorkflowDefinition};

use crate::context::Context;
use crate::error::TaskError;

/// The future a task handler returns: boxed, `Send`, borrowing the context.
///
/// ```
/// use tributary::{Context, TaskFuture};
/// fn handler(context: &mut Context<serde_json::Value>) -> TaskFuture<'_> {
///     Box::pin(async move { Ok(context.insert("done", true)?) })
/// }
/// ```
pub type TaskFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send + 'a>>;

/// A task handler: an async function of the context, shared between
/// attempts.
///
/// ```
/// use std::sync::Arc;
/// let handler: tributary::Handler = Arc::new(|context| Box::pin(async move {
///     context.upsert("seen", true);
///     Ok(())
/// }));
/// ```
pub type Handler = Arc<dyn for<'a> Fn(&'a mut Context<Value>) -> TaskFuture<'a> + Send + Sync>;

/// A task: its definition and its handler. Written with `#[task]` (which
/// generates a `<fn name>_task()` function returning one) or built here.
///
/// ```
/// use tributary::Task;
/// let task = Task::new("greet", |context| Box::pin(async move {
///     context.insert("greeting", "hello")?;
///     Ok(())
/// }))
/// .dependencies(["load"])
/// .retry_attempts(2);
/// assert_eq!(task.id(), "greet");
/// ```
#[derive(Clone)]
pub struct Task {
    definition: TaskDefinition,
    handler: Handler,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("definition", &self.definition)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// A task with default settings running `handler`.
    ///
    /// ```
    /// let task = tributary::Task::new("noop", |_context| Box::pin(async { Ok(()) }));
    /// assert!(task.definition().dependencies.is_empty());
    /// ```
    pub fn new<F>(id: impl Into<String>, handler: F) -> Task
    where
        F: for<'a> Fn(&'a mut Context<Value>) -> TaskFuture<'a> + Send + Sync + 'static,
    {
        Task::from_definition(
            TaskDefinition {
                id: id.into(),
                ..TaskDefinition::default()
            },
            handler,
        )
    }

    /// A task from a full definition (what `#[task]` expands to).
    ///
    /// ```
    /// let definition = tributary::TaskDefinition { id: "a".into(), ..Default::default() };
    /// let task = tributary::Task::from_definition(definition, |_context| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.id(), "a");
    /// ```
    pub fn from_definition<F>(definition: TaskDefinition, handler: F) -> Task
    where
        F: for<'a> Fn(&'a mut Context<Value>) -> TaskFuture<'a> + Send + Sync + 'static,
    {
        Task {
            definition,
            handler: Arc::new(handler),
        }
    }

    /// The task's id.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.id(), "a");
    /// ```
    pub fn id(&self) -> &str {
        &self.definition.id
    }

    /// The task's definition.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })).timeout_ms(500);
    /// assert_eq!(task.definition().timeout_ms, Some(500));
    /// ```
    pub fn definition(&self) -> &TaskDefinition {
        &self.definition
    }

    /// The task's handler.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// let handler: tributary::Handler = task.handler();
    /// ```
    pub fn handler(&self) -> Handler {
        self.handler.clone()
    }

    /// Sets the dependencies.
    ///
    /// ```
    /// # let task = tributary::Task::new("c", |_c| Box::pin(async { Ok(()) }));
    /// let task = task.dependencies(["a", "b"]);
    /// assert_eq!(task.definition().dependencies, ["a", "b"]);
    /// ```
    pub fn dependencies<I, S>(mut self, dependencies: I) -> Task
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.definition.dependencies = dependencies.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the retries after the first attempt.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.retry_attempts(3).definition().retry_attempts, Some(3));
    /// ```
    pub fn retry_attempts(mut self, retries: i32) -> Task {
        self.definition.retry_attempts = Some(i64::from(retries));
        self
    }

    /// Sets the base retry delay in milliseconds.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.retry_delay_ms(10).definition().retry_delay_ms, Some(10));
    /// ```
    pub fn retry_delay_ms(mut self, delay_ms: i64) -> Task {
        self.definition.retry_delay_ms = Some(delay_ms);
        self
    }

    /// Sets the backoff: `fixed`, `linear` or `exponential`.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.retry_backoff("fixed").definition().retry_backoff, "fixed");
    /// ```
    pub fn retry_backoff(mut self, backoff: impl Into<String>) -> Task {
        self.definition.retry_backoff = backoff.into();
        self
    }

    /// Sets the upper bound of a retry delay in milliseconds.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.retry_max_delay_ms(9).definition().retry_max_delay_ms, Some(9));
    /// ```
    pub fn retry_max_delay_ms(mut self, max_delay_ms: i64) -> Task {
        self.definition.retry_max_delay_ms = Some(max_delay_ms);
        self
    }

    /// Turns retry jitter on or off.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.retry_jitter(false).definition().retry_jitter, Some(false));
    /// ```
    pub fn retry_jitter(mut self, jitter: bool) -> Task {
        self.definition.retry_jitter = Some(jitter);
        self
    }

    /// Sets the time limit of one attempt in milliseconds.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.timeout_ms(100).definition().timeout_ms, Some(100));
    /// ```
    pub fn timeout_ms(mut self, timeout_ms: i64) -> Task {
        self.definition.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sets the trigger rule.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.trigger_rule("all_done").definition().trigger_rule, "all_done");
    /// ```
    pub fn trigger_rule(mut self, rule: impl Into<String>) -> Task {
        self.definition.trigger_rule = rule.into();
        self
    }

    /// Sets the handler name (the routing key), instead of
    /// `<workflow>.<task id>`.
    ///
    /// ```
    /// # let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.handler_name("billing.charge").definition().handler, "billing.charge");
    /// ```
    pub fn handler_name(mut self, handler: impl Into<String>) -> Task {
        self.definition.handler = handler.into();
        self
    }

    /// Requires an executor label: only workers registered with `key` set
    /// to `value` (see [`WorkerBuilder::label`](crate::WorkerBuilder::label))
    /// are assigned the task. Call once per label.
    ///
    /// ```
    /// # let task = tributary::Task::new("train", |_c| Box::pin(async { Ok(()) }));
    /// let task = task.required_label("gpu", "true").required_label("region", "eu");
    /// assert_eq!(task.definition().required_labels["gpu"], "true");
    /// assert_eq!(task.definition().required_labels.len(), 2);
    /// ```
    pub fn required_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Task {
        self.definition
            .required_labels
            .insert(key.into(), value.into());
        self
    }

    /// Limits the attempts of this task's handler in flight at once across
    /// every worker and run of the namespace (1 to 10000), for a handler
    /// that calls something with a limit of its own.
    ///
    /// ```
    /// # let task = tributary::Task::new("charge", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.max_in_flight(5).definition().max_in_flight, Some(5));
    /// ```
    pub fn max_in_flight(mut self, limit: i64) -> Task {
        self.definition.max_in_flight = Some(limit);
        self
    }

    /// Maps the task over the JSON array at context key `key`: at run time
    /// it runs once per element, each instance finding its element under
    /// `map_element` ([`MAP_ELEMENT_KEY`](crate::MAP_ELEMENT_KEY)) and its
    /// 0-based index under `map_index`, and setting its output at the
    /// task's output key ([`Task::map_output`], default the task's id). The
    /// outputs are gathered, in element order, into one array at that key.
    ///
    /// ```
    /// # let task = tributary::Task::new("fetch", |_c| Box::pin(async { Ok(()) }));
    /// let task = task.map_over("urls").map_output("pages").map_max_instances(500);
    /// assert_eq!(task.definition().map_over, "urls");
    /// assert_eq!(task.definition().map_output, "pages");
    /// assert_eq!(task.definition().map_max_instances, Some(500));
    /// ```
    pub fn map_over(mut self, key: impl Into<String>) -> Task {
        self.definition.map_over = key.into();
        self
    }

    /// Sets the key a mapped task's gathered outputs are written to (and
    /// each instance sets), instead of the task's id.
    ///
    /// ```
    /// # let task = tributary::Task::new("fetch", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.map_over("urls").map_output("pages").definition().map_output, "pages");
    /// ```
    pub fn map_output(mut self, key: impl Into<String>) -> Task {
        self.definition.map_output = key.into();
        self
    }

    /// Bounds a mapped task's instances (default 10,000, at most 100,000):
    /// a longer array fails the task.
    ///
    /// ```
    /// # let task = tributary::Task::new("fetch", |_c| Box::pin(async { Ok(()) }));
    /// assert_eq!(task.map_over("urls").map_max_instances(10).definition().map_max_instances, Some(10));
    /// ```
    pub fn map_max_instances(mut self, max: i64) -> Task {
        self.definition.map_max_instances = Some(max);
        self
    }
}

/// A named group of tasks: registered by a [`Client`](crate::Client), served
/// by a [`Worker`](crate::Worker).
///
/// ```
/// use tributary::{Task, Workflow};
/// let workflow = Workflow::new("etl")
///     .task(Task::new("extract", |_c| Box::pin(async { Ok(()) })))
///     .task(Task::new("load", |_c| Box::pin(async { Ok(()) })).dependencies(["extract"]));
/// workflow.validate().unwrap();
/// assert_eq!(workflow.handlers().map(|(name, _)| name).collect::<Vec<_>>(), ["etl.extract", "etl.load"]);
/// ```
#[derive(Clone, Debug)]
pub struct Workflow {
    name: String,
    description: String,
    tasks: Vec<Task>,
    concurrency: Option<ConcurrencyDefinition>,
}

impl Workflow {
    /// An empty workflow called `name`.
    ///
    /// ```
    /// assert_eq!(tributary::Workflow::new("w").name(), "w");
    /// ```
    pub fn new(name: impl Into<String>) -> Workflow {
        Workflow {
            name: name.into(),
            description: String::new(),
            tasks: Vec::new(),
            concurrency: None,
        }
    }

    /// Sets the description.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w").description("nightly");
    /// assert_eq!(workflow.definition().description, "nightly");
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> Workflow {
        self.description = description.into();
        self
    }

    /// Sets the concurrency policy: how many runs may be active at once per
    /// key (a JSON pointer into the run's input, or a fixed key), and what
    /// happens to a run started beyond that. Works on a
    /// [`workflow!`](crate::workflow!) too.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })))
    ///     .concurrency(tributary::ConcurrencyDefinition {
    ///         key_pointer: "/customer".into(),
    ///         max_active_runs: Some(2),
    ///         ..Default::default()
    ///     });
    /// workflow.validate().unwrap();
    /// assert_eq!(workflow.definition().concurrency.unwrap().key_pointer, "/customer");
    /// ```
    pub fn concurrency(mut self, policy: ConcurrencyDefinition) -> Workflow {
        self.concurrency = Some(policy);
        self
    }

    /// Adds a task.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })));
    /// assert_eq!(workflow.tasks().len(), 1);
    /// ```
    pub fn task(mut self, task: Task) -> Workflow {
        self.tasks.push(task);
        self
    }

    /// The workflow's name.
    ///
    /// ```
    /// assert_eq!(tributary::Workflow::new("w").name(), "w");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tasks, in the order they were added.
    ///
    /// ```
    /// assert!(tributary::Workflow::new("w").tasks().is_empty());
    /// ```
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The definition without handlers.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })));
    /// assert_eq!(workflow.definition().tasks[0].id, "a");
    /// ```
    pub fn definition(&self) -> WorkflowDefinition {
        WorkflowDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            tasks: self
                .tasks
                .iter()
                .map(|task| task.definition.clone())
                .collect(),
            concurrency: self.concurrency.clone(),
        }
    }

    /// Validates the definition locally, with the server's messages.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })).dependencies(["ghost"]));
    /// assert_eq!(
    ///     workflow.validate().unwrap_err().to_string(),
    ///     "task \"a\" depends on unknown task \"ghost\""
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), DefinitionError> {
        self.definition().validate()
    }

    /// Each task's handler name (see [`TaskDefinition::handler_name`]) with
    /// its handler.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })));
    /// assert_eq!(workflow.handlers().next().unwrap().0, "w.a");
    /// ```
    pub fn handlers(&self) -> impl Iterator<Item = (String, Handler)> + '_ {
        self.tasks.iter().map(|task| {
            (
                task.definition.handler_name(&self.name),
                task.handler.clone(),
            )
        })
    }
}
