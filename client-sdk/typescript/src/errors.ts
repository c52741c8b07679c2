/**
 * Errors of the SDK: what a task throws to fail an attempt, and what the
 * client raises.
 *
 * @module
 */

/**
 * Fails an attempt. Throw it from a handler with `retryable: false` (or
 * throw {@link NonRetryableError}) when retrying cannot help; anything else
 * a handler throws fails the attempt as retryable.
 */
export class TaskError extends Error {
  /** Whether the server may retry the task (within its retry budget). */
  readonly retryable: boolean;

  /**
   * @param message - what went wrong, for people
   * @param options - `retryable` (default true) and an optional `cause`
   */
  constructor(message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TaskError";
    this.retryable = options.retryable ?? true;
  }
}

/** A failure retrying cannot fix: the task fails at once, whatever its retry budget. */
export class NonRetryableError extends TaskError {
  /**
   * @param message - what went wrong
   * @param options - an optional `cause`
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retryable: false });
    this.name = "NonRetryableError";
  }
}

/** An answer of the server the SDK cannot make sense of. */
export class ProtocolError extends Error {
  /**
   * @param message - what was wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}
