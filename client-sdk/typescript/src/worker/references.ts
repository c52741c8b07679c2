/**
 * Resolving an `Assign`'s input context for a caching worker: keys sent by
 * value are kept in the cache under their names, keys sent by reference
 * are read from it, and the ones it no longer holds are fetched with
 * `fetch_values`; the attempt's input is the union.
 *
 * @module
 */

import { splitObject } from "../json.js";
import { joinObject } from "./value-cache.js";
import type { ValueCache, ValueName } from "./value-cache.js";

/** The parts of an `Assign` that carry its input. */
export interface AssignInput {
  /** The run's id. */
  runId: string;
  /** The attempt's id. */
  attemptId: string;
  /** The keys sent by value, as JSON text of an object. */
  inputContextJson: string;
  /** The names of the values in `inputContextJson` (caching workers only). */
  inlineValues: ValueName[];
  /** The keys sent by reference. */
  references: ValueName[];
}

/** What became of an assignment's input. */
export type Resolution =
  | { kind: "ready"; attemptId: string; inputJson: string }
  | { kind: "fetch"; attemptId: string; runId: string; refs: ValueName[] }
  | { kind: "failed"; attemptId: string; message: string };

interface Pending {
  runId: string;
  members: Map<string, string>;
  missing: ValueName[];
}

const sameName = (a: ValueName, b: ValueName): boolean => a.key === b.key && a.writerAttemptId === b.writerAttemptId;

/** Keeps assignments whose referenced values are being fetched. */
export class References {
  private readonly pending = new Map<string, Pending>();
  /** Per run, the attempts whose fetches are unanswered, oldest first: `values` answers in order. */
  private readonly fetches = new Map<string, string[]>();

  /**
   * @param cache - the worker's value cache
   */
  constructor(private readonly cache: ValueCache) {}

  /** The attempts waiting for values. */
  attemptIds(): string[] {
    return [...this.pending.keys()];
  }

  /**
   * Resolves an assignment's input from its inline values and the cache.
   *
   * @param assign - the assignment
   * @returns its input, or the values to fetch, or why it cannot run
   */
  assign(assign: AssignInput): Resolution {
    let members: Map<string, string>;
    try {
      members = assign.inputContextJson.trim() === "" ? new Map<string, string>() : splitObject(assign.inputContextJson);
    } catch (error) {
      return { kind: "failed", attemptId: assign.attemptId, message: `invalid input context: ${(error as Error).message}` };
    }
    if (assign.inlineValues.length === 0 && assign.references.length === 0) {
      return { kind: "ready", attemptId: assign.attemptId, inputJson: assign.inputContextJson };
    }
    for (const name of assign.inlineValues) {
      const json = members.get(name.key);
      if (json !== undefined) this.cache.put(assign.runId, name, json);
    }
    const missing: ValueName[] = [];
    for (const name of assign.references) {
      const json = this.cache.get(assign.runId, name);
      if (json === undefined) missing.push(name);
      else members.set(name.key, json);
    }
    if (missing.length === 0) {
      return { kind: "ready", attemptId: assign.attemptId, inputJson: joinObject(members) };
    }
    this.pending.set(assign.attemptId, { runId: assign.runId, members, missing });
    const queue = this.fetches.get(assign.runId) ?? [];
    queue.push(assign.attemptId);
    this.fetches.set(assign.runId, queue);
    return { kind: "fetch", attemptId: assign.attemptId, runId: assign.runId, refs: missing };
  }

  /**
   * Takes a `values` answer: caches the values, completes the assignments
   * they were missing, and fails the one whose fetch this answers if a value
   * it needs is absent (the run finished).
   *
   * @param runId - the run the values belong to
   * @param values - the values received
   * @returns the assignments now ready or failed
   */
  values(runId: string, values: { name: ValueName; json: string }[]): Resolution[] {
    for (const value of values) this.cache.put(runId, value.name, value.json);
    const answered = this.fetches.get(runId)?.shift();
    if (this.fetches.get(runId)?.length === 0) this.fetches.delete(runId);
    const outcomes: Resolution[] = [];
    for (const [attemptId, pending] of this.pending) {
      if (pending.runId !== runId) continue;
      pending.missing = pending.missing.filter((name) => {
        const value = values.find((v) => sameName(v.name, name));
        if (value === undefined) return true;
        pending.members.set(name.key, value.json);
        return false;
      });
      if (pending.missing.length === 0) {
        this.drop(attemptId);
        outcomes.push({ kind: "ready", attemptId, inputJson: joinObject(pending.members) });
      } else if (attemptId === answered) {
        this.drop(attemptId);
        const keys = pending.missing.map((name) => JSON.stringify(name.key)).join(", ");
        outcomes.push({
          kind: "failed",
          attemptId,
          message: `the server no longer has the referenced value(s) ${keys} of run ${runId}`,
        });
      }
    }
    return outcomes;
  }

  /**
   * Forgets an assignment (cancelled while waiting).
   *
   * @param attemptId - the attempt
   * @returns whether it was waiting
   */
  drop(attemptId: string): boolean {
    const pending = this.pending.get(attemptId);
    if (pending === undefined) return false;
    this.pending.delete(attemptId);
    const queue = this.fetches.get(pending.runId);
    if (queue) {
      const index = queue.indexOf(attemptId);
      if (index >= 0) queue.splice(index, 1);
      if (queue.length === 0) this.fetches.delete(pending.runId);
    }
    return true;
  }

  /** Forgets every outstanding fetch (the stream they were sent on is gone); returns the attempts that were waiting. */
  clear(): string[] {
    const attempts = [...this.pending.keys()];
    this.pending.clear();
    this.fetches.clear();
    return attempts;
  }
}
