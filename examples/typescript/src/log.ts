/** Log lines on stderr, as the Rust example's `info!` lines. */
export function info(message: string): void {
  process.stderr.write(`${new Date().toISOString()}  INFO ${message}\n`);
}

/** A warning on stderr. */
export function warn(message: string): void {
  process.stderr.write(`${new Date().toISOString()}  WARN ${message}\n`);
}
