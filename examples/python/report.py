"""What the example prints once the run is over, in the Rust example's
format (examples/src/parallel_processing/report.rs): the run's status (and
every task's when not all succeeded), the per-category stats table, the
tutorial's parallel-efficiency figure, and the measured wall-clock figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from seed import PARTITION_TASKS

from tributary_sdk import Run, SkipReason, TaskState

LOAD_SLEEP_MS = 500
"""What `generate_data` sleeps before the partitions can start."""


@dataclass
class AttemptTiming:
    """One attempt as the worker saw it (``time.perf_counter`` seconds)."""

    task_id: str
    started: float
    finished: float
    succeeded: bool


@dataclass
class Finished:
    """A run that reached a terminal status, and what was measured around it."""

    version: str
    run: Run
    elapsed: float
    attempts: list[AttemptTiming]

    def task_span(self) -> float | None:
        """From the first attempt's start to the last one's end."""
        if not self.attempts:
            return None
        return max(a.finished for a in self.attempts) - min(a.started for a in self.attempts)


def render(finished: Finished, sleeps: bool) -> str:
    """The whole report."""
    run = finished.run
    out: list[str] = []
    if all(task.state == TaskState.SUCCEEDED for task in run.tasks):
        out.append(f"Run {run.id} of {run.workflow_name} (version {finished.version}): {run.status.name}\n")
        out.append(f"All {len(run.tasks)} tasks succeeded.\n")
    else:
        out.append(task_table(run))
    out.append("\n")
    out.append(render_stats(run.context))
    out.append("\n")
    out.append(render_figures(finished, sleeps))
    return "".join(out)


def task_table(run: Run) -> str:
    """The run's header line and one line per task."""
    lines = [f"Run {run.id} of {run.workflow_name}: {run.status.name}\n"]
    for task in run.tasks:
        state = task.state.name
        if task.skip_reason == SkipReason.UPSTREAM_FAILED:
            state += " (upstream failed)"
        elif task.skip_reason == SkipReason.RULE_NOT_MET:
            state += " (rule not met)"
        line = f"  {task.task_id:<20} {state:<27} attempts: {len(task.attempts)}"
        if task.error:
            line += "  error: " + task.error
        lines.append(line.rstrip() + "\n")
    return "".join(lines)


def render_stats(context: dict[str, Any]) -> str:
    stats = context.get("final_stats")
    if not isinstance(stats, dict):
        return "The run's context has no final_stats.\n"
    rows = sorted(stats.items(), key=lambda item: natural_key(item[0]))
    lines = [f"{'Category':<14} {'Products':>9} {'Stock':>12} {'Value':>18}\n"]
    products = stock = 0
    value = 0.0
    for category, row in rows:
        lines.append(
            f"{category:<14} {grouped(int(row['product_count'])):>9} {grouped(int(row['total_stock'])):>12}"
            f" {money(float(row['total_value'])):>18}\n"
        )
        products += int(row["product_count"])
        stock += int(row["total_stock"])
        value += float(row["total_value"])
    lines.append(f"{'All':<14} {grouped(products):>9} {grouped(stock):>12} {money(value):>18}\n")
    return "".join(lines)


def render_figures(finished: Finished, sleeps: bool) -> str:
    context = finished.run.context
    out: list[str] = []
    drawn = [context.get(f"processing_time_{n}") for n in (1, 2, 3)]
    times = [t for t in drawn if isinstance(t, int)]
    efficiency = context.get("parallel_efficiency_percent")
    slowest = max(times) if len(times) == 3 else None
    if slowest is not None and efficiency is not None:
        out.append(
            "Parallel efficiency (the tutorial's figure, from its simulated times): "
            f"{' + '.join(str(t) for t in times)} = {sum(times)} ms of processing,"
            f" the longest {slowest} ms: {float(efficiency):.1f}%\n"
        )
        if not sleeps:
            out.append("  (--no-sleep: those times were drawn, not slept)\n")
    else:
        out.append("Parallel efficiency: n/a, the partitions did not all finish\n")
    overlap = partition_overlap(finished.attempts)
    if overlap is not None and overlap[1] > 0:
        work, span = overlap
        out.append(
            "Measured parallel efficiency (worker clock): the partitions ran "
            f"{milliseconds(work)} ms of processing in {milliseconds(span)} ms of wall clock:"
            f" {work / span * 100:.1f}%\n"
        )
    else:
        out.append("Measured parallel efficiency: n/a\n")
    line = f"Wall time: {milliseconds(finished.elapsed)} ms from StartRun until the run was seen finished"
    span_all = finished.task_span()
    if span_all is not None:
        line += f", {milliseconds(span_all)} ms from the first task's start to the last one's end"
    out.append(line + "\n")
    if sleeps and slowest is not None and span_all is not None:
        floor = LOAD_SLEEP_MS + slowest
        rest = max(0.0, span_all - floor / 1000)
        out.append(
            f"  the sleeps alone take {LOAD_SLEEP_MS} ms + the slowest partition's {slowest} ms"
            f" = {floor} ms; the rest, {milliseconds(rest)} ms, is Tributary and the tasks' own work\n"
        )
    return "".join(out)


def partition_overlap(attempts: list[AttemptTiming]) -> tuple[float, float] | None:
    """The partitions' summed durations and the span from the first start
    to the last end (worker clock); ``None`` unless all three succeeded
    here."""
    chosen: list[AttemptTiming] = []
    for task_id in PARTITION_TASKS:
        found = [a for a in attempts if a.task_id == task_id and a.succeeded]
        if not found:
            return None
        chosen.append(found[-1])
    work = sum(a.finished - a.started for a in chosen)
    span = max(a.finished for a in chosen) - min(a.started for a in chosen)
    return work, span


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def natural_key(name: str) -> tuple[str, int]:
    """Sorts `Category 2` before `Category 10`."""
    match = re.search(r"\d+$", name)
    if match is None:
        return name, 0
    return name[: match.start()], int(match.group())


def grouped(value: int) -> str:
    """`1234567` -> `1,234,567`."""
    return f"{value:,}"


def money(value: float) -> str:
    """`1234567.891` -> `1,234,567.89`, rounding half away from zero."""
    scaled = abs(value * 100.0)
    cents = math.floor(scaled)
    if scaled - cents >= 0.5:
        cents += 1
    sign = "-" if value < 0 and cents else ""
    return f"{sign}{grouped(cents // 100)}.{cents % 100:02d}"
