/**
 * The rows of the timeline (a Gantt of attempts): per task, its queue
 * waits (ready, no executor yet), each attempt (assigned, then running,
 * coloured by how it ended) and its retry waits, placed on the run's span.
 * Bars carry their times in `data-start`/`data-end` (Unix ms).
 *
 * @module
 */

import { formatDuration, h } from "../dom.js";
import type { TaskView } from "../model.js";

/** The run's span on the time axis. */
export interface Span {
  start: number;
  end: number;
}

function bar(kind: string, from: number, to: number, span: Span, title: string): HTMLElement {
  const width = span.end - span.start;
  const left = ((from - span.start) / width) * 100;
  const right = ((Math.min(to, span.end) - span.start) / width) * 100;
  return h("span", {
    class: `bar ${kind}`,
    style: `left:${Math.max(0, left).toFixed(3)}%;width:${Math.max(0.2, right - left).toFixed(3)}%`,
    title,
    "data-start": from,
    "data-end": to,
  });
}

/** One task's row. */
export function renderTimelineRow(task: TaskView, span: Span, selected: boolean, onSelect: (id: string) => void): HTMLElement {
  const now = Date.now();
  const track = h("span", { class: "track", role: "cell" });
  for (const wait of task.waits) {
    const to = wait.toMs ?? now;
    if (to > wait.fromMs) track.appendChild(bar(wait.kind === "retry" ? "wait-retry" : "wait-queued", wait.fromMs, to, span, `${wait.kind === "retry" ? "retry wait" : "queued"} ${formatDuration(to - wait.fromMs)}`));
  }
  for (const attempt of task.attempts) {
    const started = attempt.startedAtMs ?? attempt.endedAtMs ?? now;
    track.appendChild(bar("assigned", attempt.assignedAtMs, started, span, `attempt ${attempt.number} assigned`));
    if (attempt.startedAtMs !== undefined) {
      const ended = attempt.endedAtMs ?? now;
      const bareState = attempt.state.toLowerCase();
      const element = bar(`running attempt-${bareState}`, attempt.startedAtMs, ended, span, `attempt ${attempt.number}: ${bareState.replace(/_/g, " ")}, ${formatDuration(ended - attempt.startedAtMs)}${attempt.error ? ` — ${attempt.error}` : ""}`);
      element.dataset.attempt = String(attempt.number);
      track.appendChild(element);
    }
  }
  return h(
    "div",
    { class: `row timeline-row${selected ? " selected" : ""}`, role: "row", "data-task": task.id, "data-state": task.state },
    h("span", { role: "cell", class: "timeline-label" }, h("button", { type: "button", class: `link-button mono state-text-${task.state.toLowerCase()}`, onclick: () => onSelect(task.id) }, task.id)),
    track,
  );
}

/** The axis above the rows: the run's start, middle and end. */
export function timelineAxis(): { element: HTMLElement; update: (span: Span) => void } {
  const start = h("span", {});
  const middle = h("span", {});
  const end = h("span", {});
  const element = h("div", { class: "row timeline-row head", "aria-hidden": "true" }, h("span", { class: "timeline-label" }, "task"), h("span", { class: "axis" }, start, middle, end));
  return {
    element,
    update(span) {
      const length = span.end - span.start;
      start.textContent = "0";
      middle.textContent = formatDuration(length / 2);
      end.textContent = formatDuration(length);
    },
  };
}
