/**
 * The tutorial's `tokio::time::sleep` stands in for expensive work;
 * `--no-sleep` skips it (same work, same results) through this
 * process-wide switch, since the tasks see nothing but their context.
 */
let sleeps = true;

/** Whether {@link sleep} really sleeps (the default) or returns at once. */
export function setSleeps(value: boolean): void {
  sleeps = value;
}

/** Whether {@link sleep} really sleeps. */
export function sleepsEnabled(): boolean {
  return sleeps;
}

/** Sleeps `ms` milliseconds, unless sleeps are off. */
export async function sleep(ms: number): Promise<void> {
  if (sleeps) await new Promise((resolve) => setTimeout(resolve, ms));
}
