/** Full-jitter exponential backoff, honouring a server's retry-after when it is within our ceiling. */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  retryAfter: string | undefined,
  rand: () => number = Math.random,
): number | null {
  if (retryAfter !== undefined) {
    const ms = retryAfterMs(retryAfter);
    if (Number.isFinite(ms)) {
      // A server asking for longer than we would ever wait: move on to the next backend instead.
      if (ms > maxMs) return null;
      return Math.max(0, ms);
    }
  }
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + rand() * (ceiling / 2);
}

export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/** A retry-after value (seconds, or an HTTP date) in ms from now; NaN when it is neither. */
export function retryAfterMs(retryAfter: string): number {
  const seconds = Number(retryAfter);
  return Number.isFinite(seconds) ? seconds * 1000 : Date.parse(retryAfter) - Date.now();
}
