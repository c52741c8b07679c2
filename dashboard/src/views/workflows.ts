/**
 * The workflows of the namespace (latest versions), and one workflow's DAG
 * with each task's retry, timeout, trigger, label and in-flight limit settings. Registrations have
 * no event, so the list is read when the view opens.
 *
 * @module
 */

import { describeError, keyNeeded, needsKey, workflows } from "../api.js";
import { drawDag, layersOf } from "../dag.js";
import { formatDuration, formatTime, h, replaceChildren } from "../dom.js";
import type { TaskDefinition, Workflow } from "../gen/tributary/v1/workflow_pb.js";
import type { ViewContext } from "../main.js";
import { ms } from "../model.js";

/** Mounts the list of workflows. */
export function mountWorkflows(root: HTMLElement, context: ViewContext): void {
  context.setTitle("Workflows");
  const message = h("p", { class: "message", role: "alert" });
  const body = h("tbody", {});
  replaceChildren(
    root,
    h("h1", {}, "Workflows"),
    message,
    h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["workflow", "latest version", "versions", "tasks", "registered"].map((n) => h("th", { scope: "col" }, n)))), body),
  );
  void (async () => {
    const all: Workflow[] = [];
    try {
      let pageToken = "";
      do {
        const response = await workflows.listWorkflows({ pageSize: 1000, pageToken }, { signal: context.signal });
        all.push(...response.workflows);
        pageToken = response.nextPageToken;
      } while (pageToken !== "");
    } catch (error) {
      if (context.signal.aborted) return;
      if (needsKey(error)) keyNeeded(error);
      message.textContent = `Cannot list workflows: ${describeError(error)}`;
      return;
    }
    if (all.length === 0) message.textContent = "No workflow is registered in this namespace.";
    for (const workflow of all) {
      const name = workflow.definition?.name ?? "";
      body.appendChild(
        h(
          "tr",
          { "data-workflow": name },
          h("td", {}, h("a", { href: `#/workflows/${name}` }, name)),
          h("td", { class: "mono" }, workflow.version),
          h("td", {}, String(workflow.sequence)),
          h("td", {}, String(workflow.definition?.tasks.length ?? 0)),
          h("td", {}, formatTime(ms(workflow.createdAt))),
        ),
      );
    }
  })();
}

function setting(value: bigint | number | boolean | undefined, format: (v: number) => string = String): string {
  if (value === undefined) return "default";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return format(Number(value));
}

/** Mounts one workflow: its DAG and its tasks' settings. */
export function mountWorkflow(root: HTMLElement, name: string, context: ViewContext): void {
  context.setTitle(`Workflow ${name}`);
  const message = h("p", { class: "message", role: "alert" });
  replaceChildren(root, h("p", { class: "back" }, h("a", { href: "#/workflows" }, "← Workflows")), h("h1", {}, "Workflow ", name), message);
  void (async () => {
    let workflow: Workflow | undefined;
    try {
      workflow = (await workflows.getWorkflow({ name, selector: { case: undefined } }, { signal: context.signal })).workflow;
    } catch (error) {
      if (context.signal.aborted) return;
      if (needsKey(error)) keyNeeded(error);
      message.textContent = `Cannot read the workflow: ${describeError(error)}`;
      return;
    }
    const tasks: TaskDefinition[] = workflow?.definition?.tasks ?? [];
    const layers = layersOf(tasks.map((t) => ({ id: t.id, dependencies: [...t.dependencies] })));
    const rowOf = new Map<string, HTMLTableRowElement>();
    const dag = drawDag(layers, (id) => {
      const row = rowOf.get(id);
      row?.scrollIntoView({ block: "center" });
      row?.querySelector("a, td")?.parentElement?.classList.add("flash");
    });
    dag.update(() => "WAITING", undefined);
    const shown = tasks.slice(0, 2000);
    const body = h("tbody", {});
    for (const t of shown) {
      const row = h(
        "tr",
        { "data-task": t.id },
        h("td", { class: "mono" }, t.id),
        h("td", { class: "mono" }, t.dependencies.join(", ")),
        h("td", {}, setting(t.retryAttempts)),
        h("td", {}, `${setting(t.retryDelayMs, formatDuration)} ${t.retryBackoff || ""}, max ${setting(t.retryMaxDelayMs, formatDuration)}${t.retryJitter === false ? ", no jitter" : ""}`),
        h("td", {}, setting(t.timeoutMs, formatDuration)),
        h("td", {}, t.triggerRule),
        h("td", { class: "mono" }, t.handler),
        h("td", { class: "mono" }, requiredLabels(t.requiredLabels)),
        // Unset is no limit of the handler's own, not a server default.
        h("td", {}, t.maxInFlight === undefined ? "—" : String(t.maxInFlight)),
      );
      rowOf.set(t.id, row);
      body.appendChild(row);
    }
    root.append(
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "version"), h("dd", { class: "mono" }, workflow?.version ?? ""),
        h("dt", {}, "registered"), h("dd", {}, formatTime(ms(workflow?.createdAt))),
        h("dt", {}, "description"), h("dd", {}, workflow?.definition?.description || "—"),
      ),
      h("section", {}, h("h2", {}, "Graph"), dag.element),
      h(
        "section",
        {},
        h("h2", {}, "Tasks"),
        shown.length < tasks.length ? h("p", { class: "hint" }, `The first ${shown.length} of ${tasks.length} tasks.`) : null,
        h("div", { class: "table-scroll" }, h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["task", "dependencies", "retries", "retry delay", "timeout", "trigger rule", "handler", "required labels", "max in flight"].map((n) => h("th", { scope: "col" }, n)))), body)),
      ),
    );
  })();
}

/** A task's required executor labels as `key=value` pairs in key order, or a dash. */
function requiredLabels(labels: { [key: string]: string }): string {
  const keys = Object.keys(labels).sort();
  return keys.length === 0 ? "—" : keys.map((key) => `${key}=${labels[key]}`).join(", ");
}
