/**
 * The Tributary TypeScript SDK, browser-safe part: the {@link Client}, task
 * and workflow declaration, the task {@link Context} and lossless JSON. The
 * worker (Node only) is in `@tributary-dev/sdk/worker`, a gRPC-over-HTTP/2
 * client for Node in `@tributary-dev/sdk/node`.
 *
 * @module
 */

export { Client, createClient, isTransient, DEFAULT_NAMESPACE, NAMESPACE_HEADER } from "./client.js";
export type {
  ClientOptions,
  ExecutorInfo,
  GetRunOptions,
  ListRunsOptions,
  RetriedRun,
  RetryOptions,
  RunPage,
  StartOptions,
  StartedRun,
  WatchEventsOptions,
  WatchRunOptions,
} from "./client.js";
export type { CatchUpPolicy, NewSchedule, OverlapPolicy, Schedule } from "./schedule.js";
export { isTerminal } from "./model.js";
export type {
  AttemptOutcome,
  Conflict,
  RegisteredWorkflow,
  Run,
  RunEvent,
  RunEventKind,
  RunStatus,
  SkipReason,
  TaskOutcome,
  TaskState,
} from "./model.js";
export { Context, ContextError } from "./context.js";
export type { AttemptInfo, ContextErrorKind, JsonDecoder, JsonTypeName, JsonTypes } from "./context.js";
export { NonRetryableError, ProtocolError, TaskError } from "./errors.js";
export {
  JsonNumber,
  JsonSyntaxError,
  JsonValueError,
  jsonEqual,
  parseJson,
  splitObject,
  stringifyJson,
} from "./json.js";
export type { JsonArray, JsonObject, JsonValue } from "./json.js";
export {
  BACKOFFS,
  DefinitionError,
  MAX_DELAY_MS,
  MAX_IN_FLIGHT,
  MAX_LABELS,
  MAX_LABEL_KEY_BYTES,
  MAX_LABEL_VALUE_BYTES,
  MAX_MAP_KEY_BYTES,
  MAP_ELEMENT_KEY,
  MAP_INDEX_KEY,
  MAP_MAX_INSTANCES_LIMIT,
  MAX_RETRY_ATTEMPTS,
  MAX_TIMEOUT_MS,
  TRIGGER_RULES,
  CONCURRENCY_STRATEGIES,
  MAX_ACTIVE_RUNS_LIMIT,
  MAX_POLICY_KEY_BYTES,
  checkConcurrency,
  checkLabels,
  isValidHandler,
  isValidIdentifier,
  validateDefinition,
} from "./validate.js";
export type {
  Backoff,
  ConcurrencyPolicyJson,
  TaskDefinitionJson,
  TriggerRule,
  WorkflowDefinitionJson,
} from "./validate.js";
export { Workflow, definitionFromJson, task, taskDefinition, workflow } from "./workflow.js";
export type { Handler, Task, TaskOptions } from "./workflow.js";
