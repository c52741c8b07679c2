//! The [`Client`]: registers workflows, starts, reads, lists, cancels and
//! waits for runs (following them with [`Client::watch`]).

use std::time::Duration;

use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tributary_core::WorkflowDefinition;
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::schedule_service_client::ScheduleServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

use crate::error::Error;
use crate::events::{RunEventKind, is_transient};
use crate::runs::{Run, RunStatus};
use crate::workflow::Workflow;

/// How long [`Client::wait`] pauses before following a run again after the
/// server went away.
const REWATCH_DELAY: Duration = Duration::from_millis(200);

/// A stored workflow version, as returned by [`Client::register_workflow`].
///
/// ```no_run
/// # async fn f(client: tributary::Client, workflow: tributary::Workflow) -> Result<(), tributary::Error> {
/// let registered = client.register_workflow(&workflow).await?;
/// println!("{} version {}", registered.name, registered.version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredWorkflow {
    /// The workflow's name.
    pub name: String,
    /// The version hash computed by the server.
    pub version: String,
    /// The version's sequence number.
    pub sequence: u64,
    /// False when the same definition was registered before.
    pub created: bool,
}

/// A started (or, with an idempotency key, existing) run.
///
/// ```no_run
/// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
/// let started = client.start_run("etl", serde_json::json!({})).await?;
/// println!("{}", started.run_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    /// The run's id.
    pub run_id: String,
    /// The version the run is pinned to.
    pub workflow_version: String,
    /// False when an idempotency key matched an existing run.
    pub created: bool,
}

/// Options of [`Client::start_run_with`].
///
/// ```
/// let options = tributary::StartOptions {
///     idempotency_key: Some("order-42".into()),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The same key with an identical request returns the existing run.
    pub idempotency_key: Option<String>,
    /// A version hash to run instead of the latest.
    pub workflow_version: Option<String>,
}

/// Filters of [`Client::list_runs`].
///
/// ```
/// let filter = tributary::ListRuns {
///     workflow_name: Some("etl".into()),
///     status: Some(tributary::RunStatus::Failed),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRuns {
    /// Only runs of this workflow.
    pub workflow_name: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Page size (0 means the server's default).
    pub page_size: u32,
    /// The token of the previous page.
    pub page_token: String,
}

/// Which instances of each mapped task [`Client::get_run_with`] lists.
///
/// ```
/// let counts_only = tributary::GetRunOptions { max_instances: Some(0), ..Default::default() };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetRunOptions {
    /// The element index of the first instance listed (0: the first).
    pub instances_from: u32,
    /// At most this many listed under each mapped task (0: none, the
    /// counts only); `None` for as many as fit in one answer.
    pub max_instances: Option<u32>,
}

/// One page of runs (without their tasks), newest first.
///
/// ```no_run
/// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
/// let page = client.list_runs(tributary::ListRuns::default()).await?;
/// println!("{} runs, more: {}", page.runs.len(), !page.next_page_token.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// The token of the next page; empty on the last page.
    pub next_page_token: String,
}

/// Sends `x-tributary-namespace`, and the API key when there is one, with
/// every call.
#[derive(Debug, Clone)]
pub(crate) struct Namespace {
    namespace: AsciiMetadataValue,
    authorization: Option<AsciiMetadataValue>,
}

impl Interceptor for Namespace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            tributary_proto::NAMESPACE_METADATA_KEY,
            self.namespace.clone(),
        );
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

pub(crate) type Intercepted = InterceptedService<Channel, Namespace>;

/// A connection to a Tributary server, scoped to one namespace. Cheap to
/// clone; clones share the connection.
///
/// ```no_run
/// use serde_json::json;
/// # async fn f(workflow: tributary::Workflow) -> Result<(), tributary::Error> {
/// let client = tributary::Client::connect("http://127.0.0.1:50051").await?;
/// client.register_workflow(&workflow).await?;
/// let started = client.start_run(workflow.name(), json!({"n": 1})).await?;
/// let run = client.wait(&started.run_id).await?;
/// println!("{:?}: {}", run.status, run.context);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    namespace: String,
    authorization: Option<AsciiMetadataValue>,
    workflows: WorkflowServiceClient<Intercepted>,
    runs: RunServiceClient<Intercepted>,
    schedules: ScheduleServiceClient<Intercepted>,
}

impl Client {
    /// Connects to `server_url` (`http://host:port`), namespace `default`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tributary::Error> {
    /// let client = tributary::Client::connect("http://127.0.0.1:50051").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(server_url: impl Into<String>) -> Result<Client, Error> {
        Client::connect_with(server_url, &crate::ConnectOptions::new()).await
    }

    /// Connects to `server_url` with an API key and TLS settings, namespace
    /// `default` (or the key's). `https://` URLs use TLS; a scheme that does
    /// not match the server is [`Error::SchemeMismatch`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tributary::Error> {
    /// let options = tributary::ConnectOptions::new().api_key("trb_...");
    /// let client = tributary::Client::connect_with("https://tributary.internal:50051", &options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        server_url: impl Into<String>,
        options: &crate::ConnectOptions,
    ) -> Result<Client, Error> {
        let url = server_url.into();
        let channel = crate::connection::connect(options.endpoint(&url)?, &url).await?;
        Client::build(
            channel,
            tributary_proto::DEFAULT_NAMESPACE,
            AsciiMetadataValue::from_static(tributary_proto::DEFAULT_NAMESPACE),
            options.authorization()?,
        )
    }

    /// A client over an existing channel, in `namespace`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect().await?;
    /// let client = tributary::Client::from_channel(channel, "billing")?;
    /// # Ok(()) }
    /// ```
    pub fn from_channel(channel: Channel, namespace: &str) -> Result<Client, Error> {
        let value = AsciiMetadataValue::try_from(namespace)
            .map_err(|_| Error::InvalidNamespace(namespace.to_owned()))?;
        Client::build(channel, namespace, value, None)
    }

    fn build(
        channel: Channel,
        namespace: &str,
        value: AsciiMetadataValue,
        authorization: Option<AsciiMetadataValue>,
    ) -> Result<Client, Error> {
        let interceptor = Namespace {
            namespace: value,
            authorization: authorization.clone(),
        };
        Ok(Client {
            authorization,
            workflows: WorkflowServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            ),
            schedules: ScheduleServiceClient::with_interceptor(
                channel.clone(),
                interceptor.clone(),
            ),
            runs: RunServiceClient::with_interceptor(channel.clone(), interceptor)
                .max_decoding_message_size(usize::MAX),
            channel,
            namespace: namespace.to_owned(),
        })
    }

    /// The same connection, in another namespace.
    ///
    /// ```no_run
    /// # fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let billing = client.with_namespace("billing")?;
    /// # Ok(()) }
    /// ```
    pub fn with_namespace(&self, namespace: &str) -> Result<Client, Error> {
        let value = AsciiMetadataValue::try_from(namespace)
            .map_err(|_| Error::InvalidNamespace(namespace.to_owned()))?;
        Client::build(
            self.channel.clone(),
            namespace,
            value,
            self.authorization.clone(),
        )
    }

    /// The namespace of every call.
    ///
    /// ```no_run
    /// # fn f(client: tributary::Client) {
    /// assert_eq!(client.namespace(), "default");
    /// # }
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Validates `workflow` locally (the server's rules and messages), then
    /// registers it; the server computes the version.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, workflow: tributary::Workflow) -> Result<(), tributary::Error> {
    /// let registered = client.register_workflow(&workflow).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_workflow(
        &self,
        workflow: &Workflow,
    ) -> Result<RegisteredWorkflow, Error> {
        self.register_definition(&workflow.definition()).await
    }

    /// Registers a definition without handlers (validated locally first).
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let definition: tributary::WorkflowDefinition =
    ///     serde_json::from_str(r#"{"name": "w", "tasks": [{"id": "a"}]}"#)?;
    /// client.register_definition(&definition).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_definition(
        &self,
        definition: &WorkflowDefinition,
    ) -> Result<RegisteredWorkflow, Error> {
        definition.validate()?;
        let response = self
            .workflows
            .clone()
            .register_workflow(pb::RegisterWorkflowRequest {
                definition: Some(pb::WorkflowDefinition::from(definition)),
            })
            .await?
            .into_inner();
        let workflow = response
            .workflow
            .ok_or_else(|| Error::Protocol("RegisterWorkflow returned no workflow".to_owned()))?;
        Ok(RegisteredWorkflow {
            name: workflow.definition.map(|d| d.name).unwrap_or_default(),
            version: workflow.version,
            sequence: workflow.sequence,
            created: response.created,
        })
    }

    /// Starts a run of the latest version of `workflow` with `input` (a JSON
    /// object).
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let started = client.start_run("etl", serde_json::json!({"day": "2026-01-01"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_run(&self, workflow: &str, input: Value) -> Result<StartedRun, Error> {
        self.start_run_with(workflow, input, StartOptions::default())
            .await
    }

    /// Starts a run with options (an idempotency key, a pinned version).
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let options = tributary::StartOptions { idempotency_key: Some("k".into()), ..Default::default() };
    /// let first = client.start_run_with("etl", serde_json::json!({}), options.clone()).await?;
    /// let again = client.start_run_with("etl", serde_json::json!({}), options).await?;
    /// assert_eq!(first.run_id, again.run_id);
    /// # Ok(()) }
    /// ```
    pub async fn start_run_with(
        &self,
        workflow: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<StartedRun, Error> {
        let response = self
            .runs
            .clone()
            .start_run(pb::StartRunRequest {
                workflow_name: workflow.to_owned(),
                workflow_version: options.workflow_version.unwrap_or_default(),
                input_context_json: serde_json::to_string(&input)?,
                idempotency_key: options.idempotency_key.unwrap_or_default(),
            })
            .await?
            .into_inner();
        Ok(StartedRun {
            run_id: response.run_id,
            workflow_version: response.workflow_version,
            created: response.created,
        })
    }

    /// Reads a run with its tasks and context.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// let run = client.get_run(run_id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_run(&self, run_id: &str) -> Result<Run, Error> {
        self.get_run_with(run_id, GetRunOptions::default()).await
    }

    /// [`Client::get_run`] with a window on the instances of mapped tasks:
    /// a large map is read page by page.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// let options = tributary::GetRunOptions { instances_from: 1000, max_instances: Some(100) };
    /// let run = client.get_run_with(run_id, options).await?;
    /// let fetch = run.task("fetch").unwrap();
    /// println!("{} instances, from {:?}", fetch.map_size, fetch.instances.first().and_then(|i| i.map_index));
    /// # Ok(()) }
    /// ```
    pub async fn get_run_with(&self, run_id: &str, options: GetRunOptions) -> Result<Run, Error> {
        let run = self
            .runs
            .clone()
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: false,
                instances_from: options.instances_from,
                max_instances: options.max_instances,
            })
            .await?
            .into_inner()
            .run
            .ok_or_else(|| Error::Protocol("GetRun returned no run".to_owned()))?;
        Run::from_proto(run)
    }

    /// Lists runs, newest first.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let page = client.list_runs(tributary::ListRuns { workflow_name: Some("etl".into()), ..Default::default() }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_runs(&self, filter: ListRuns) -> Result<RunPage, Error> {
        let response = self
            .runs
            .clone()
            .list_runs(pb::ListRunsRequest {
                workflow_name: filter.workflow_name.unwrap_or_default(),
                status: filter
                    .status
                    .map_or(pb::RunStatus::Unspecified, RunStatus::to_proto)
                    .into(),
                page_size: filter.page_size,
                page_token: filter.page_token,
            })
            .await?
            .into_inner();
        Ok(RunPage {
            runs: response
                .runs
                .into_iter()
                .map(Run::from_proto)
                .collect::<Result<_, _>>()?,
            next_page_token: response.next_page_token,
        })
    }

    /// Cancels a run that has not finished; running tasks are sent a
    /// cancellation. Returns the run's status (`Cancelled`).
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// client.cancel_run(run_id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_run(&self, run_id: &str) -> Result<RunStatus, Error> {
        let response = self
            .runs
            .clone()
            .cancel_run(pb::CancelRunRequest {
                run_id: run_id.to_owned(),
            })
            .await?
            .into_inner();
        RunStatus::from_proto(response.status())
    }

    /// Waits until the run is terminal and returns it (status, tasks, final
    /// context). It follows the run's events, so it returns as soon as the
    /// run finishes; when the server restarts meanwhile it follows again.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// let run = client.wait(run_id).await?;
    /// assert!(run.status.is_terminal());
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self, run_id: &str) -> Result<Run, Error> {
        let mut after_sequence = 0;
        loop {
            match self.follow_to_finish(run_id, &mut after_sequence).await {
                Ok(true) => return self.get_run(run_id).await,
                // The stream ended early: the server is stopping.
                Ok(false) => {}
                Err(error) if is_transient(&error) => {}
                Err(error) => return Err(error),
            }
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }

    /// Follows the run's events from `after_sequence` to the end of the
    /// stream; true when the stream ended with the run finished.
    async fn follow_to_finish(
        &self,
        run_id: &str,
        after_sequence: &mut u64,
    ) -> Result<bool, Error> {
        // The stream ends after the RUN_FINISHED that ends the log; a
        // retried run has earlier ones, so only the last event counts.
        let mut events = self.watch(run_id, *after_sequence).await?;
        let mut finished = false;
        while let Some(event) = events.next().await {
            let event = event?;
            *after_sequence = event.sequence;
            finished = event.kind == RunEventKind::RunFinished;
        }
        Ok(finished)
    }

    pub(crate) fn runs(&self) -> RunServiceClient<Intercepted> {
        self.runs.clone()
    }

    pub(crate) fn schedules(&self) -> ScheduleServiceClient<Intercepted> {
        self.schedules.clone()
    }
}
