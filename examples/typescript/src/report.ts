/**
 * What the example prints on stdout once the run is over, in the format of
 * the Rust example (examples/src/parallel_processing/report.rs): the run's
 * status (and every task's when not all succeeded), the per-category stats
 * table, the tutorial's parallel-efficiency figure, and the measured
 * wall-clock figures.
 */

import type { JsonObject, Run } from "@tributary-dev/sdk";
import { PARTITION_TASKS } from "./followup.js";
import type { CategoryStats } from "./seed.js";

/** What `generate_data` sleeps before the partitions can start. */
const LOAD_SLEEP_MS = 500;

/** One attempt as this process's worker saw it (performance.now() clock, ms). */
export interface AttemptTiming {
  taskId: string;
  started: number;
  finished: number;
  succeeded: boolean;
}

/** A finished run and what was measured around it. */
export interface Finished {
  version: string;
  run: Run;
  /** From StartRun until the run was seen finished, ms. */
  elapsedMs: number;
  attempts: AttemptTiming[];
}

const pad = (text: string, width: number, left: boolean): string => (left ? text.padEnd(width) : text.padStart(width));

/** `1234567` -> `1,234,567`. */
export function grouped(value: number | bigint): string {
  return BigInt(value).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** `1234567.891` -> `1,234,567.89`. */
export function money(value: number): string {
  const cents = Math.round(Math.abs(value) * 100);
  const sign = value < 0 && cents > 0 ? "-" : "";
  return `${sign}${grouped(Math.floor(cents / 100))}.${String(cents % 100).padStart(2, "0")}`;
}

/** Sorts `Category 2` before `Category 10`. */
function naturalKey(name: string): [string, number] {
  const match = /^(.*?)(\d*)$/.exec(name);
  return [match?.[1] ?? name, Number(match?.[2] || 0)];
}

function milliseconds(ms: number): string {
  return ms.toFixed(1);
}

/** `SUCCEEDED`, `SKIPPED (upstream failed)`, ... */
function stateName(task: Run["tasks"][number]): string {
  if (task.skipReason === "UPSTREAM_FAILED") return `${task.state} (upstream failed)`;
  if (task.skipReason === "RULE_NOT_MET") return `${task.state} (rule not met)`;
  return task.state;
}

/** The run's header line and one line per task: state, attempts, and the last error. */
export function taskTable(run: Run): string {
  let out = `Run ${run.id} of ${run.workflowName}: ${run.status}\n`;
  for (const task of run.tasks) {
    let line = `  ${task.taskId.padEnd(20)} ${stateName(task).padEnd(27)} attempts: ${task.attempts.length}`;
    if (task.error !== "") line += `  error: ${task.error}`;
    out += `${line.trimEnd()}\n`;
  }
  return out;
}

/** The whole report; `sleeps` says whether the tutorial's sleeps were on. */
export function render(finished: Finished, sleeps: boolean): string {
  const run = finished.run;
  let out = "";
  if (run.tasks.every((task) => task.state === "SUCCEEDED")) {
    out += `Run ${run.id} of ${run.workflowName} (version ${finished.version}): ${run.status}\n`;
    out += `All ${run.tasks.length} tasks succeeded.\n`;
  } else {
    out += taskTable(run);
  }
  out += "\n";
  out += renderStats(run.context);
  out += "\n";
  out += renderFigures(finished, sleeps);
  return out;
}

function renderStats(context: JsonObject): string {
  const stats = context.final_stats as unknown as Record<string, CategoryStats> | undefined;
  if (stats === undefined || stats === null || typeof stats !== "object") return "The run's context has no final_stats.\n";
  const rows = Object.entries(stats).sort(([a], [b]) => {
    const [stemA, numberA] = naturalKey(a);
    const [stemB, numberB] = naturalKey(b);
    return stemA < stemB ? -1 : stemA > stemB ? 1 : numberA - numberB;
  });
  const line = (a: string, b: string, c: string, d: string): string =>
    `${pad(a, 14, true)} ${pad(b, 9, false)} ${pad(c, 12, false)} ${pad(d, 18, false)}\n`;
  let out = line("Category", "Products", "Stock", "Value");
  let products = 0;
  let stock = 0;
  let value = 0;
  for (const [category, row] of rows) {
    out += line(category, grouped(Number(row.product_count)), grouped(Number(row.total_stock)), money(Number(row.total_value)));
    products += Number(row.product_count);
    stock += Number(row.total_stock);
    value += Number(row.total_value);
  }
  out += line("All", grouped(products), grouped(stock), money(value));
  return out;
}

/** The partitions' summed durations and the span from the first start to the last end; undefined unless all three succeeded here. */
export function partitionOverlap(attempts: AttemptTiming[]): { workMs: number; spanMs: number } | undefined {
  const found = PARTITION_TASKS.map((taskId) => [...attempts].reverse().find((a) => a.taskId === taskId && a.succeeded));
  if (found.some((a) => a === undefined)) return undefined;
  const partitions = found as AttemptTiming[];
  const firstStart = Math.min(...partitions.map((a) => a.started));
  const lastEnd = Math.max(...partitions.map((a) => a.finished));
  return { workMs: partitions.reduce((sum, a) => sum + (a.finished - a.started), 0), spanMs: lastEnd - firstStart };
}

function taskSpan(attempts: AttemptTiming[]): number | undefined {
  if (attempts.length === 0) return undefined;
  return Math.max(...attempts.map((a) => a.finished)) - Math.min(...attempts.map((a) => a.started));
}

function renderFigures(finished: Finished, sleeps: boolean): string {
  const context = finished.run.context;
  let out = "";
  const times = [1, 2, 3].map((n) => context[`processing_time_${n}`]);
  const efficiency = context.parallel_efficiency_percent;
  if (times.every((t) => typeof t === "number") && typeof efficiency === "number") {
    const values = times as number[];
    const slowest = Math.max(...values);
    out +=
      `Parallel efficiency (the tutorial's figure, from its simulated times): ${values.join(" + ")} = ` +
      `${values.reduce((a, b) => a + b, 0)} ms of processing, the longest ${slowest} ms: ${efficiency.toFixed(1)}%\n`;
    if (!sleeps) out += "  (--no-sleep: those times were drawn, not slept)\n";
  } else {
    out += "Parallel efficiency: n/a, the partitions did not all finish\n";
  }
  const overlap = partitionOverlap(finished.attempts);
  if (overlap !== undefined && overlap.spanMs > 0) {
    out +=
      `Measured parallel efficiency (worker clock): the partitions ran ${milliseconds(overlap.workMs)} ms ` +
      `of processing in ${milliseconds(overlap.spanMs)} ms of wall clock: ${((overlap.workMs / overlap.spanMs) * 100).toFixed(1)}%\n`;
  } else {
    out += "Measured parallel efficiency: n/a\n";
  }
  const span = taskSpan(finished.attempts);
  out += `Wall time: ${milliseconds(finished.elapsedMs)} ms from StartRun until the run was seen finished`;
  if (span !== undefined) out += `, ${milliseconds(span)} ms from the first task's start to the last one's end`;
  out += "\n";
  const slowest = times.every((t) => typeof t === "number") ? Math.max(...(times as number[])) : undefined;
  if (sleeps && slowest !== undefined && span !== undefined) {
    const floor = LOAD_SLEEP_MS + slowest;
    out +=
      `  the sleeps alone take ${LOAD_SLEEP_MS} ms + the slowest partition's ${slowest} ms ` +
      `= ${floor} ms; the rest, ${milliseconds(Math.max(0, span - floor))} ms, is Tributary and the tasks' own work\n`;
  }
  return out;
}
