/**
 * The worker's cache of context values, for value references
 * (`Register.value_cache_bytes`): values the worker produced (once ACCEPTED)
 * or received, kept as JSON text under their `ValueRef` (run, writer
 * attempt, key), least recently used evicted first, bounded by bytes.
 *
 * @module
 */

/** The name of one context value: the key and the attempt that wrote it (empty for the run's input). */
export interface ValueName {
  /** The top-level context key. */
  key: string;
  /** The attempt whose result set it; empty for the run's input. */
  writerAttemptId: string;
}

/**
 * What the cache counts for one value besides its text: the bookkeeping of
 * an entry. With its name, it keeps the cache honest about memory; the
 * server counts the text only, so a worker never holds more than it offered.
 */
export const ENTRY_OVERHEAD_BYTES = 64;

/**
 * The bytes one cached value counts for: its text, its name (run, key,
 * writer attempt) and {@link ENTRY_OVERHEAD_BYTES}.
 *
 * @param runId - the run
 * @param name - the value's name
 * @param json - its JSON text
 * @returns the bytes counted
 */
export function entryBytes(runId: string, name: ValueName, json: string): number {
  return utf8Length(json) + utf8Length(runId) + utf8Length(name.key) + utf8Length(name.writerAttemptId) + ENTRY_OVERHEAD_BYTES;
}

interface Cached {
  runId: string;
  json: string;
  bytes: number;
}

/** The UTF-8 length of a string, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair: 4 bytes for 2 code units.
        bytes += 2;
        i++;
        continue;
      }
      bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/** A bounded LRU map of value names to JSON text; each value counts {@link entryBytes}. */
export class ValueCache {
  private readonly entries = new Map<string, Cached>();
  private total = 0;

  /**
   * @param capacityBytes - the most bytes kept, counted by {@link entryBytes}; 0 keeps nothing
   */
  constructor(readonly capacityBytes: number) {}

  /** The bytes held now. */
  get bytes(): number {
    return this.total;
  }

  /** The values held now. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Keeps a value, evicting the least recently used ones to make room; a
   * value larger than the whole cache is not kept.
   *
   * @param runId - the run
   * @param name - the value's name
   * @param json - its JSON text
   */
  put(runId: string, name: ValueName, json: string): void {
    const id = cacheKey(runId, name);
    this.delete(id);
    const bytes = entryBytes(runId, name, json);
    if (bytes > this.capacityBytes) return;
    while (this.total + bytes > this.capacityBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    this.entries.set(id, { runId, json, bytes });
    this.total += bytes;
  }

  /**
   * A value's JSON text, marking it recently used.
   *
   * @param runId - the run
   * @param name - the value's name
   * @returns the text, or `undefined` when not held
   */
  get(runId: string, name: ValueName): string | undefined {
    const id = cacheKey(runId, name);
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.json;
  }

  /**
   * Drops every value of a run (`forget_run`).
   *
   * @param runId - the run
   */
  forgetRun(runId: string): void {
    for (const [id, entry] of this.entries) {
      if (entry.runId === runId) this.delete(id);
    }
  }

  /** Drops everything (after a reconnect the server assumes nothing is held). */
  clear(): void {
    this.entries.clear();
    this.total = 0;
  }

  private delete(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.entries.delete(id);
    this.total -= entry.bytes;
  }
}

function cacheKey(runId: string, name: ValueName): string {
  return `${runId}\u0000${name.writerAttemptId}\u0000${name.key}`;
}

/**
 * Builds an input context's JSON text from members given as JSON text.
 *
 * @param members - key to JSON text of its value
 * @returns JSON text of the object
 */
export function joinObject(members: Iterable<[string, string]>): string {
  const parts: string[] = [];
  for (const [key, json] of members) parts.push(`${JSON.stringify(key)}:${json}`);
  return `{${parts.join(",")}}`;
}
