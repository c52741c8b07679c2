/**
 * The runs: the newest first, live. `ListRuns` gives the first page (with
 * the filters), one `WatchEvents` stream (run starts, first assignments,
 * run ends) keeps it current; statuses only move forward, so an event and
 * a page read in either order agree.
 *
 * @module
 */

import { describeError, follow, keyNeeded, needsKey, runs, workflows } from "../api.js";
import { formatDuration, formatTime, frameScheduler, h, replaceChildren, stateBadge } from "../dom.js";
import { RunEventType, RunStatus } from "../gen/tributary/v1/run_pb.js";
import type { WatchEventsResponse } from "../gen/tributary/v1/run_pb.js";
import type { ViewContext } from "../main.js";
import { isFinished, ms, runStatusName } from "../model.js";
import { virtualList } from "../virtual.js";

interface RunRow {
  id: string;
  workflow: string;
  status: string;
  createdAtMs: number | undefined;
  finishedAtMs: number | undefined;
  /** The run's retry_count, as far as the list knows. */
  retryCount: number;
  /** When the latest RUN_RETRIED seen happened (events only). */
  retriedAtMs?: number;
}

/**
 * The creation time in a UUIDv7 run id (its first 48 bits), for a run first
 * seen through a later event than its start.
 */
function createdFromId(id: string): number | undefined {
  const hex = id.replace(/-/g, "").slice(0, 12);
  return /^[0-9a-f]{12}$/i.test(hex) && id[14] === "7" ? parseInt(hex, 16) : undefined;
}

const RANK: Record<string, number> = { QUEUED: -1, PENDING: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 2, CANCELLED: 2 };
const STATUSES = ["QUEUED", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

/** Mounts the runs view. */
export function mountRuns(root: HTMLElement, context: ViewContext): void {
  context.setTitle("Runs");
  const rows = new Map<string, RunRow>();
  let visible: RunRow[] = [];
  let nextPageToken = "";
  const workflowSelect = h("select", { id: "filter-workflow" }, h("option", { value: "" }, "all workflows"));
  const statusSelect = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s.toLowerCase())));
  const findInput = h("input", { id: "find-run", type: "search", placeholder: "run id (or its start)", size: 38, spellcheck: "false", autocomplete: "off" });
  const message = h("p", { class: "message", role: "alert" });
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true }, "Load older runs");

  const merge = (row: RunRow): void => {
    const known = rows.get(row.id);
    if (!known) {
      rows.set(row.id, { ...row, createdAtMs: row.createdAtMs ?? createdFromId(row.id) });
      return;
    }
    // A page read after a retry knows more than an older page.
    if (row.retryCount > known.retryCount) {
      known.retryCount = row.retryCount;
      known.status = row.status;
      known.finishedAtMs = row.finishedAtMs;
    } else if (row.retryCount < known.retryCount) {
      return;
    }
    if ((RANK[row.status] ?? 0) > (RANK[known.status] ?? 0)) known.status = row.status;
    known.workflow ||= row.workflow;
    known.createdAtMs ??= row.createdAtMs;
    known.finishedAtMs ??= row.finishedAtMs;
  };

  // A retry is the one move backwards (finished to RUNNING): it applies to
  // a finished row that finished before it, and a RUN_FINISHED before the
  // latest retry seen is an old end. (A retry that falls between the
  // stream's start and the page read can be counted twice in "retried N×";
  // the status is right either way.)
  const retried = (id: string, workflow: string, time: number | undefined): void => {
    const known = rows.get(id);
    if (!known) {
      rows.set(id, { id, workflow, status: "RUNNING", createdAtMs: createdFromId(id), finishedAtMs: undefined, retryCount: 1, retriedAtMs: time });
      return;
    }
    known.workflow ||= workflow;
    if (isFinished(known.status) && (known.finishedAtMs === undefined || time === undefined || time >= known.finishedAtMs)) {
      known.status = "RUNNING";
      known.finishedAtMs = undefined;
      known.retryCount++;
    }
    if (time !== undefined && (known.retriedAtMs === undefined || time > known.retriedAtMs)) known.retriedAtMs = time;
  };
  const finished = (id: string, workflow: string, status: string, time: number | undefined): void => {
    const known = rows.get(id);
    if (known?.retriedAtMs !== undefined && time !== undefined && time < known.retriedAtMs) return;
    if (known && isFinished(known.status) && known.finishedAtMs !== undefined) return;
    merge({ id, workflow, status, createdAtMs: undefined, finishedAtMs: time, retryCount: known?.retryCount ?? 0 });
  };

  const header = h(
    "div",
    { class: "row head runs-row", role: "row" },
    ["run", "workflow", "status", "created", "duration"].map((name) => h("span", { role: "columnheader" }, name)),
  );
  const durationOf = (row: RunRow): string =>
    row.createdAtMs === undefined ? "—" : formatDuration((row.finishedAtMs ?? Date.now()) - row.createdAtMs);
  const list = virtualList({
    rowHeight: 34,
    height: "calc(100vh - 260px)",
    label: "runs",
    header,
    count: () => visible.length,
    renderRow(index) {
      const row = visible[index] as RunRow;
      return h(
        "div",
        { class: "row runs-row", role: "row", "data-run": row.id, "data-status": row.status },
        h("span", { role: "cell" }, h("a", { href: `#/runs/${row.id}`, class: "mono" }, row.id)),
        h("span", { role: "cell" }, row.workflow),
        h("span", { role: "cell" }, stateBadge(row.status), row.retryCount > 0 ? h("span", { class: "hint retries" }, ` retried ${row.retryCount}×`) : null),
        h("span", { role: "cell" }, formatTime(row.createdAtMs)),
        h("span", { role: "cell", class: "duration" }, durationOf(row)),
      );
    },
  });

  const render = frameScheduler(() => {
    const workflow = workflowSelect.value;
    const status = statusSelect.value;
    const find = findInput.value.trim().toLowerCase();
    visible = [...rows.values()]
      .filter((r) => (!workflow || r.workflow === workflow) && (!status || r.status === status) && (!find || r.id.startsWith(find)))
      .sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const running = visible.filter((r) => !isFinished(r.status)).length;
    summary.textContent = `${visible.length} run${visible.length === 1 ? "" : "s"} shown, ${running} not finished`;
    more.hidden = nextPageToken === "";
    list.refresh();
  });

  const load = async (pageToken: string): Promise<void> => {
    try {
      const response = await runs.listRuns(
        {
          workflowName: workflowSelect.value,
          status: statusSelect.value ? RunStatus[statusSelect.value as keyof typeof RunStatus] : RunStatus.UNSPECIFIED,
          pageSize: 200,
          pageToken,
        },
        { signal: context.signal },
      );
      for (const run of response.runs) {
        merge({ id: run.id, workflow: run.workflowName, status: runStatusName(run.status), createdAtMs: ms(run.createdAt), finishedAtMs: ms(run.finishedAt), retryCount: run.retryCount });
      }
      nextPageToken = response.nextPageToken;
      message.textContent = "";
      render();
    } catch (error) {
      if (context.signal.aborted) return;
      if (needsKey(error)) keyNeeded(error);
      message.textContent = `Cannot list runs: ${describeError(error)}`;
    }
  };

  const loadWorkflows = async (): Promise<void> => {
    try {
      const response = await workflows.listWorkflows({ pageSize: 1000 }, { signal: context.signal });
      for (const workflow of response.workflows) {
        const name = workflow.definition?.name ?? "";
        if (![...workflowSelect.options].some((o) => o.value === name)) workflowSelect.appendChild(h("option", { value: name }, name));
      }
    } catch {
      // The filter then offers only "all workflows"; the list says why.
    }
  };

  workflowSelect.addEventListener("change", () => void load(""));
  statusSelect.addEventListener("change", () => void load(""));
  findInput.addEventListener("input", render);
  findInput.addEventListener("keydown", (event) => {
    const id = findInput.value.trim();
    if (event.key === "Enter" && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) location.hash = `#/runs/${id.toLowerCase()}`;
  });
  more.addEventListener("click", () => void load(nextPageToken));

  replaceChildren(
    root,
    h("h1", {}, "Runs"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "filter-workflow" }, "Workflow "),
      workflowSelect,
      h("label", { for: "filter-status" }, "Status "),
      statusSelect,
      h("label", { for: "find-run" }, "Find "),
      findInput,
    ),
    message,
    summary,
    list.element,
    more,
  );

  // The stream first, then the page: the page is read once the server has
  // accepted the stream (its headers arrived), so nothing between the two
  // is missed.
  let cursor = 0n;
  void follow<WatchEventsResponse>({
    signal: context.signal,
    open: (signal) => {
      // A first open, or a reopen before any event came, starts at the end
      // and reads the page again, which covers what happened meanwhile; a
      // reopen after events resumes from the last cursor.
      const fromNow = cursor === 0n;
      return runs.watchEvents(
        { afterCursor: cursor, fromNow, types: [RunEventType.RUN_QUEUED, RunEventType.RUN_STARTED, RunEventType.TASK_ASSIGNED, RunEventType.RUN_FINISHED, RunEventType.RUN_RETRIED] },
        { signal, onHeader: () => (fromNow ? void load("") : undefined) },
      );
    },
    onMessage: ({ event }) => {
      if (!event || event.cursor <= cursor) return;
      cursor = event.cursor;
      const time = ms(event.time);
      const retryCount = rows.get(event.runId)?.retryCount ?? 0;
      if (event.type === RunEventType.RUN_QUEUED) merge({ id: event.runId, workflow: event.workflowName, status: "QUEUED", createdAtMs: time, finishedAtMs: undefined, retryCount });
      else if (event.type === RunEventType.RUN_STARTED) merge({ id: event.runId, workflow: event.workflowName, status: "PENDING", createdAtMs: time, finishedAtMs: undefined, retryCount });
      else if (event.type === RunEventType.TASK_ASSIGNED) merge({ id: event.runId, workflow: event.workflowName, status: "RUNNING", createdAtMs: undefined, finishedAtMs: undefined, retryCount });
      else if (event.type === RunEventType.RUN_FINISHED) finished(event.runId, event.workflowName, runStatusName(event.runStatus), time);
      else if (event.type === RunEventType.RUN_RETRIED) retried(event.runId, event.workflowName, time);
      if (event.type === RunEventType.RUN_STARTED && ![...workflowSelect.options].some((o) => o.value === event.workflowName)) {
        workflowSelect.appendChild(h("option", { value: event.workflowName }, event.workflowName));
      }
      render();
    },
    onState: context.setStreamState,
    onError: (error) => {
      message.textContent = `The live stream stopped: ${describeError(error)}`;
    },
    reopenAfterEnd: () => true,
  });
  void loadWorkflows();
  // Durations of unfinished runs grow with the local clock.
  const tick = setInterval(() => {
    if (visible.some((r) => !isFinished(r.status))) list.refresh();
  }, 1000);
  context.signal.addEventListener("abort", () => clearInterval(tick));
}
