/**
 * The executors connected to the server in this namespace: handlers,
 * capacity and attempts in flight, live from one `WatchExecutors` stream
 * (a snapshot, then a new one whenever the set or their load changes).
 *
 * @module
 */

import { describeError, executors, follow } from "../api.js";
import { formatTime, h, replaceChildren } from "../dom.js";
import type { ExecutorInfo, WatchExecutorsResponse } from "../gen/tributary/v1/executor_pb.js";
import type { ViewContext } from "../main.js";
import { ms } from "../model.js";

/** Mounts the executors view. */
export function mountExecutors(root: HTMLElement, context: ViewContext): void {
  context.setTitle("Executors");
  const message = h("p", { class: "message", role: "alert" });
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const body = h("tbody", {});
  replaceChildren(
    root,
    h("h1", {}, "Executors"),
    message,
    summary,
    h("div", { class: "table-scroll" }, h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["name", "executor", "handlers", "in flight", "capacity", "labels", "connected"].map((n) => h("th", { scope: "col" }, n)))), body)),
  );
  const show = (list: ExecutorInfo[]): void => {
    const inFlight = list.reduce((sum, e) => sum + e.inFlightAttemptIds.length, 0);
    const capacity = list.reduce((sum, e) => sum + e.maxConcurrentAttempts, 0);
    summary.textContent = `${list.length} executor${list.length === 1 ? "" : "s"}, ${inFlight} of ${capacity} slots busy`;
    replaceChildren(
      body,
      list.map((e) =>
        h(
          "tr",
          { "data-executor": e.executorId, "data-in-flight": e.inFlightAttemptIds.length },
          h("td", {}, e.name),
          h("td", { class: "mono", title: `instance ${e.instanceId}` }, e.executorId.slice(0, 8)),
          h("td", { class: "handlers" }, e.handlers.length > 12 ? `${e.handlers.slice(0, 12).join(", ")} and ${e.handlers.length - 12} more` : e.handlers.join(", ")),
          h("td", {}, h("meter", { min: 0, max: Math.max(1, e.maxConcurrentAttempts), value: e.inFlightAttemptIds.length, "aria-label": "in flight" }), ` ${e.inFlightAttemptIds.length}`),
          h("td", {}, String(e.maxConcurrentAttempts)),
          h("td", { class: "mono" }, Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(" ")),
          h("td", {}, formatTime(ms(e.connectedAt))),
        ),
      ),
    );
    if (list.length === 0) body.appendChild(h("tr", {}, h("td", { colspan: 7, class: "hint" }, "No executor is connected.")));
  };
  void follow<WatchExecutorsResponse>({
    signal: context.signal,
    open: (signal) => executors.watchExecutors({}, { signal }),
    onMessage: (response) => {
      message.textContent = "";
      show(response.executors);
    },
    onState: context.setStreamState,
    onError: (error) => {
      message.textContent = `The live stream stopped: ${describeError(error)}`;
    },
    reopenAfterEnd: () => true,
  });
}
