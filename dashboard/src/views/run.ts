/**
 * One run, live: its DAG coloured by task state, a timeline of attempts
 * (queue waits, retries and overlap visible), the tasks with their
 * attempts, the event log and the context. State comes from one `WatchRun`
 * stream folded into a {@link RunModel}, resumed after the last sequence
 * after a disconnect or a server restart; `GetRun` gives the context.
 *
 * @module
 */

import { describeError, explainError, follow, isTransient, keyNeeded, needsKey, requestId, runs, sleep, workflows } from "../api.js";
import { drawDag, layersOf } from "../dag.js";
import type { DagView, Layers } from "../dag.js";
import { formatDuration, formatTime, frameScheduler, h, replaceChildren, stateBadge, stateLabel } from "../dom.js";
import { RunEventType } from "../gen/tributary/v1/run_pb.js";
import type { Run, WatchRunResponse } from "../gen/tributary/v1/run_pb.js";
import { jsonTree, parseLossless } from "../jsontree.js";
import type { ViewContext } from "../main.js";
import { RunModel, instanceCounts, isFinished } from "../model.js";
import type { AttemptView, TaskView } from "../model.js";
import { virtualList } from "../virtual.js";
import { renderTimelineRow, timelineAxis } from "./timeline.js";

/** Mounts the view of run `runId`. */
export function mountRun(root: HTMLElement, runId: string, context: ViewContext): void {
  context.setTitle(`Run ${runId.slice(0, 8)}`);
  const opened = performance.now();
  delete document.body.dataset.runRenderedMs;
  delete document.body.dataset.runEvents;
  const message = h("p", { class: "message", role: "alert" });
  replaceChildren(root, h("p", { class: "back" }, h("a", { href: "#/runs" }, "← Runs")), h("h1", {}, "Run ", h("span", { class: "mono" }, runId)), message, h("p", { class: "loading" }, "Loading…"));
  void (async () => {
    let snapshot: Run | undefined;
    let layers: Layers;
    try {
      snapshot = (await runs.getRun({ runId }, { signal: context.signal })).run;
      if (!snapshot) throw new Error("GetRun returned no run");
      const workflow = (
        await workflows.getWorkflow({ name: snapshot.workflowName, selector: { case: "version", value: snapshot.workflowVersion } }, { signal: context.signal })
      ).workflow;
      layers = layersOf((workflow?.definition?.tasks ?? []).map((t) => ({ id: t.id, dependencies: [...t.dependencies] })));
    } catch (error) {
      if (context.signal.aborted) return;
      if (needsKey(error)) keyNeeded(error);
      root.querySelector(".loading")?.remove();
      message.textContent = `Cannot read the run: ${describeError(error)}`;
      return;
    }
    showRun(root, snapshot, layers, context, opened);
  })();
}

function showRun(root: HTMLElement, snapshot: Run, layers: Layers, context: ViewContext, opened: number): void {
  const runId = snapshot.id;
  const order = layers.layers.flat();
  const model = new RunModel(runId, order);
  let selected: string | undefined;
  let contextJson = snapshot.contextJson;
  let contextVersion = -1;

  const message = h("p", { class: "message", role: "alert" });
  const statusCell = h("span", { id: "run-status" });
  const durationCell = h("span", {});
  const createdCell = h("span", {});
  const countsLine = h("p", { class: "counts", "aria-live": "polite" });
  const cancelButton = h("button", { type: "button", class: "danger", id: "cancel-run" }, "Cancel run");
  const retriesCell = h("span", { id: "run-retries" });
  // Retry: the failed, skipped and cancelled tasks of a failed or cancelled
  // run; of a succeeded run (nothing failed), from the chosen task.
  const retryButton = h("button", { type: "button", id: "retry-run" }, "Retry");
  let retrying = false;
  // The retry count the server reported (GetRun, RetryRun): WatchRun is
  // followed again until the model has applied that many RUN_RETRIED.
  let expectedRetries = snapshot.retryCount;
  const retry = async (fromTask: string): Promise<void> => {
    if (retrying || !isFinished(model.status)) return;
    retrying = true;
    message.textContent = "";
    render();
    // One id per click: a call repeated after a lost answer (or a second
    // click landing before the first answer) is the same retry.
    const id = requestId();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const response = await runs.retryRun({ runId, fromTask, requestId: id }, { signal: context.signal });
          expectedRetries = Math.max(expectedRetries, response.retryCount);
          break;
        } catch (error) {
          if (context.signal.aborted) return;
          if (attempt >= 3 || !isTransient(error)) throw error;
          await sleep(300 * attempt, context.signal);
        }
      }
      watchRun();
    } catch (error) {
      if (needsKey(error)) keyNeeded(error);
      message.textContent = `Cannot retry: ${explainError(error)}`;
    } finally {
      retrying = false;
      render();
    }
  };
  retryButton.addEventListener("click", () => void retry(model.status === "SUCCEEDED" ? (selected ?? "") : ""));
  cancelButton.addEventListener("click", async () => {
    if (!confirm(`Cancel run ${runId}? Its unfinished tasks become cancelled.`)) return;
    cancelButton.disabled = true;
    try {
      await runs.cancelRun({ runId }, { signal: context.signal });
    } catch (error) {
      if (needsKey(error)) keyNeeded(error);
      message.textContent = `Cannot cancel: ${explainError(error)}`;
      cancelButton.disabled = false;
    }
  });

  const dag: DagView = drawDag(layers, (id) => select(id));

  // The timeline: one row per task, in layer order.
  const axis = timelineAxis();
  const timeline = virtualList({
    rowHeight: 24,
    height: "360px",
    label: "timeline of attempts",
    header: axis.element,
    count: () => order.length,
    renderRow: (index) => {
      const task = model.tasks.get(order[index] as string) as TaskView;
      return renderTimelineRow(task, span(), task.id === selected, select);
    },
  });
  const span = (): { start: number; end: number } => {
    const start = model.createdAtMs ?? Date.now();
    let end = model.finishedAtMs ?? Date.now();
    if (end <= start) end = start + 1;
    return { start, end };
  };

  // The tasks: one row each, with attempts and what ended them.
  const tasksHeader = h("div", { class: "row head tasks-row", role: "row" }, ["task", "state", "attempts", "last error or skip reason"].map((n) => h("span", { role: "columnheader" }, n)));
  const taskList = virtualList({
    rowHeight: 30,
    height: "320px",
    label: "tasks",
    header: tasksHeader,
    count: () => order.length,
    renderRow: (index) => {
      const task = model.tasks.get(order[index] as string) as TaskView;
      return h(
        "div",
        { class: `row tasks-row${task.id === selected ? " selected" : ""}`, role: "row", "data-task": task.id, "data-state": task.state },
        h("span", { role: "cell" }, h("button", { type: "button", class: "link-button mono", onclick: () => select(task.id) }, task.id)),
        h("span", { role: "cell" }, stateBadge(task.state)),
        h("span", { role: "cell" }, task.mapSize > 0 ? `${task.mapSize} instances` : String(task.attempts.length)),
        h("span", { role: "cell", class: "error-text" }, task.skipReason ? `skipped: ${stateLabel(task.skipReason)}` : task.error),
      );
    },
  });
  const taskDetail = h("div", { class: "task-detail", id: "task-detail", "aria-live": "polite" }, h("p", { class: "hint" }, "Choose a task in the graph, the timeline or the list to see its attempts."));

  // The event log, newest last, following the end while it is in view.
  const eventsHeader = h("div", { class: "row head events-row", role: "row" }, ["#", "time", "event", "task", "attempt", "executor", "detail"].map((n) => h("span", { role: "columnheader" }, n)));
  const eventList = virtualList({
    rowHeight: 26,
    height: "300px",
    label: "event log",
    header: eventsHeader,
    follow: true,
    count: () => model.events.length,
    renderRow: (index) => {
      const event = model.events[index] as RunModel["events"][number];
      return h(
        "div",
        { class: "row events-row", role: "row", "data-type": event.type },
        h("span", { role: "cell" }, String(event.sequence)),
        h("span", { role: "cell" }, new Date(event.timeMs).toLocaleTimeString()),
        h("span", { role: "cell" }, stateLabel(event.type)),
        h("span", { role: "cell", class: "mono" }, event.taskId),
        h("span", { role: "cell" }, event.attemptNumber ? String(event.attemptNumber) : ""),
        h("span", { role: "cell", class: "mono" }, event.executorId.slice(0, 8)),
        h("span", { role: "cell", class: "error-text" }, event.detail),
      );
    },
  });

  // The context, parsed and drawn only when opened.
  const contextBody = h("div", { id: "context-tree" });
  const contextSection = h("details", { class: "context" }, h("summary", {}, h("h2", {}, "Context")), contextBody);
  const renderContext = (): void => {
    if (!contextSection.open || contextVersion === model.version) return;
    contextVersion = model.version;
    try {
      replaceChildren(contextBody, h("p", { class: "hint" }, `${contextJson.length.toLocaleString()} bytes${isFinished(model.status) ? ", final" : ", as of the latest succeeded task"}`), jsonTree(parseLossless(contextJson || "{}")));
    } catch (error) {
      replaceChildren(contextBody, h("p", { class: "message" }, `The context is not JSON: ${String(error)}`));
    }
  };
  let contextFetch: Promise<void> | undefined;
  let contextStale = false;
  const refreshContext = (): void => {
    contextStale = true;
    if (!contextSection.open || contextFetch) return;
    contextStale = false;
    contextFetch = (async () => {
      try {
        const run = (await runs.getRun({ runId }, { signal: context.signal })).run;
        if (run) contextJson = run.contextJson;
        contextVersion = -1;
        renderContext();
      } catch {
        // Shown again at the next change.
      }
      // At most one read a second however fast tasks succeed.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      contextFetch = undefined;
      if (contextStale) refreshContext();
    })();
  };
  contextSection.addEventListener("toggle", () => {
    if (contextSection.open) refreshContext();
  });

  const select = (id: string): void => {
    selected = id;
    render();
    renderDetail();
  };
  const renderDetail = (): void => {
    if (!selected) return;
    const task = model.tasks.get(selected);
    if (!task) return;
    replaceChildren(
      taskDetail,
      h("h3", {}, h("span", { class: "mono" }, task.id), " ", stateBadge(task.state)),
      task.skipReason ? h("p", {}, `Skipped: ${stateLabel(task.skipReason)}.`) : null,
      h(
        "p",
        {},
        h(
          "button",
          {
            type: "button",
            id: "retry-from-task",
            disabled: retrying || !isFinished(model.status),
            title: isFinished(model.status) ? `Run ${task.id} and every task after it again` : "The run is not finished",
            onclick: () => void retry(task.id),
          },
          "Retry from this task",
        ),
        isFinished(model.status) ? null : h("span", { class: "hint" }, " once the run has finished"),
      ),
      task.mapSize > 0 ? renderInstances(task) : null,
      task.mapSize > 0
        ? null
        : task.attempts.length === 0
        ? h("p", { class: "hint" }, "No attempt yet.")
        : h(
            "table",
            { class: "attempts" },
            h("thead", {}, h("tr", {}, ["#", "state", "executor", "assigned", "ran for", "error"].map((n) => h("th", { scope: "col" }, n)))),
            h("tbody", {}, task.attempts.map((a: AttemptView) =>
              h(
                "tr",
                { "data-attempt": a.number },
                h("td", {}, String(a.number)),
                h("td", {}, stateBadge(a.state)),
                h("td", { class: "mono" }, a.executorId.slice(0, 8)),
                h("td", {}, new Date(a.assignedAtMs).toLocaleTimeString()),
                h("td", {}, a.startedAtMs === undefined ? "—" : formatDuration((a.endedAtMs ?? Date.now()) - a.startedAtMs)),
                h("td", { class: "error-text" }, a.error),
              ),
            )),
          ),
      task.waits.some((w) => w.kind === "retry") ? h("p", { class: "hint" }, `${task.waits.filter((w) => w.kind === "retry").length} retry wait(s), hatched on the timeline.`) : null,
    );
  };

  let firstRender = true;
  const render = frameScheduler(() => {
    const status = model.status;
    replaceChildren(statusCell, stateBadge(status));
    createdCell.textContent = formatTime(model.createdAtMs);
    durationCell.textContent = model.createdAtMs === undefined ? "—" : formatDuration((model.finishedAtMs ?? Date.now()) - model.createdAtMs);
    cancelButton.hidden = isFinished(status);
    const retryFrom = status === "SUCCEEDED" ? selected : undefined;
    retryButton.textContent = retryFrom ? `Retry from ${retryFrom}` : "Retry";
    retryButton.disabled = retrying || !isFinished(status) || (status === "SUCCEEDED" && !retryFrom);
    retryButton.title = !isFinished(status)
      ? "The run is not finished"
      : status === "SUCCEEDED"
        ? retryFrom
          ? `Run ${retryFrom} and every task after it again`
          : "Nothing failed: choose a task to retry from it"
        : "Run the failed, skipped and cancelled tasks again";
    retriesCell.textContent = model.retryCount === 0 ? "never" : `retried ${model.retryCount}×`;
    const counts = model.counts();
    countsLine.textContent = [...counts].sort((a, b) => b[1] - a[1]).map(([state, n]) => `${n} ${stateLabel(state)}`).join(" · ");
    dag.update((id) => model.tasks.get(id)?.state ?? "WAITING", selected);
    timeline.refresh();
    taskList.refresh();
    eventList.refresh();
    axis.update(span());
    renderDetail();
    // Read by the browser tests: no gap and no duplicate means as many
    // events as the last sequence.
    document.body.dataset.runEvents = `${model.events.length}/${model.lastSequence}`;
    if (firstRender) {
      firstRender = false;
      // Read by the browser tests: how long the run took to show.
      document.body.dataset.runRenderedMs = String(Math.round(performance.now() - opened));
    }
  });

  replaceChildren(
    root,
    h("p", { class: "back" }, h("a", { href: "#/runs" }, "← Runs")),
    h("div", { class: "run-head" }, h("h1", {}, "Run ", h("span", { class: "mono" }, runId)), cancelButton, retryButton),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "status"), h("dd", {}, statusCell),
      h("dt", {}, "workflow"), h("dd", {}, h("a", { href: `#/workflows/${snapshot.workflowName}` }, snapshot.workflowName), " ", h("span", { class: "mono hint" }, snapshot.workflowVersion)),
      h("dt", {}, "created"), h("dd", {}, createdCell),
      h("dt", {}, "duration"), h("dd", {}, durationCell),
      h("dt", {}, "retries"), h("dd", {}, retriesCell),
      snapshot.idempotencyKey ? [h("dt", {}, "idempotency key"), h("dd", { class: "mono" }, snapshot.idempotencyKey)] : null,
    ),
    message,
    countsLine,
    h("section", { "aria-labelledby": "dag-title" }, h("h2", { id: "dag-title" }, "Graph"), dag.element),
    h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), h("p", { class: "legend hint" }, h("span", { class: "key key-queued" }), "queued ", h("span", { class: "key key-assigned" }), "assigned ", h("span", { class: "key key-running" }), "running ", h("span", { class: "key key-retry" }), "retry wait"), timeline.element),
    h("div", { class: "split" }, h("section", { "aria-labelledby": "tasks-title" }, h("h2", { id: "tasks-title" }, "Tasks"), taskList.element), h("section", { "aria-labelledby": "detail-title" }, h("h2", { id: "detail-title" }, "Attempts"), taskDetail)),
    h("section", { "aria-labelledby": "events-title" }, h("h2", { id: "events-title" }, "Events"), eventList.element),
    contextSection,
  );
  render();

  // WatchRun ends after the RUN_FINISHED that is the log's last event; a
  // retry (from this page or elsewhere) reopens it from the last sequence.
  let watching = false;
  let retryWatch: AbortController | undefined;
  const watchRun = (): void => {
    if (watching || context.signal.aborted) return;
    watching = true;
    retryWatch?.abort();
    retryWatch = undefined;
    void follow<WatchRunResponse>({
      signal: context.signal,
      open: (signal) => runs.watchRun({ runId, afterSequence: model.lastSequence }, { signal }),
      onMessage: ({ event }) => {
        if (!event || !model.apply(event)) return;
        if (event.type === RunEventType.TASK_SUCCEEDED || event.type === RunEventType.RUN_FINISHED || event.type === RunEventType.RUN_RETRIED) refreshContext();
        render();
      },
      onState: context.setStreamState,
      onError: (error) => {
        message.textContent = `The live stream stopped: ${describeError(error)}`;
      },
      // An end before RUN_FINISHED was a cut stream; an end at a RUN_FINISHED
      // the server has already reopened is followed on.
      reopenAfterEnd: () => !isFinished(model.status) || model.retryCount < expectedRetries,
    }).finally(() => {
      watching = false;
      if (context.signal.aborted) return;
      if (model.retryCount < expectedRetries) watchRun();
      else if (isFinished(model.status)) watchForRetry();
    });
  };
  // While the run is finished, a retry made elsewhere (the CLI, another
  // tab) shows as RUN_RETRIED in the namespace's events; the retry count
  // read from GetRun says whether there is more to follow.
  const checkRetries = async (): Promise<void> => {
    try {
      const run = (await runs.getRun({ runId }, { signal: context.signal })).run;
      if (run && run.retryCount > expectedRetries) {
        expectedRetries = run.retryCount;
        watchRun();
      }
    } catch {
      // Checked again at the next event or reconnection.
    }
  };
  const watchForRetry = (): void => {
    if (retryWatch) return;
    const controller = new AbortController();
    retryWatch = controller;
    context.signal.addEventListener("abort", () => controller.abort(), { once: true });
    void follow({
      signal: controller.signal,
      open: (signal) =>
        runs.watchEvents({ runIds: [runId], types: [RunEventType.RUN_RETRIED], fromNow: true }, { signal, onHeader: () => void checkRetries() }),
      onMessage: () => void checkRetries(),
      onState: () => {},
      onError: () => {},
      reopenAfterEnd: () => true,
    });
  };
  watchRun();
  const tick = setInterval(() => {
    if (!isFinished(model.status)) render();
  }, 1000);
  context.signal.addEventListener("abort", () => clearInterval(tick));
}

/** Instances of a mapped task listed in its detail; the rest are counted. */
const SHOWN_INSTANCES = 100;

/** A mapped task's instances: counts by state, then the first ones. */
function renderInstances(task: TaskView): HTMLElement {
  const counts = [...instanceCounts(task)].map(([state, count]) => `${count} ${stateLabel(state)}`).join(", ");
  const shown = task.instances.slice(0, SHOWN_INSTANCES);
  return h(
    "div",
    { class: "instances", "data-instances": task.mapSize },
    h("p", {}, `Mapped into ${task.mapSize} instances: ${counts}.`),
    h(
      "table",
      { class: "attempts" },
      h("thead", {}, h("tr", {}, ["instance", "state", "attempts", "error"].map((n) => h("th", { scope: "col" }, n)))),
      h("tbody", {}, shown.map((instance, index) =>
        h(
          "tr",
          { "data-instance": index },
          h("td", { class: "mono" }, `[${index}]`),
          h("td", {}, stateBadge(instance.state)),
          h("td", {}, String(instance.attempts.length)),
          h("td", { class: "error-text" }, instance.error),
        ),
      )),
    ),
    task.instances.length > SHOWN_INSTANCES ? h("p", { class: "hint" }, `${task.instances.length - SHOWN_INSTANCES} more instances not listed.`) : null,
  );
}
