// Retry delays: exponential with full jitter (a uniform pick in [0, min(max, initial * 2^n)],
// as in AWS's "Exponential Backoff And Jitter"), so that the agents of a whole cluster,
// cut off together by an API server restart, come back spread out rather than in step.
// A Retry-After from the server (429, 503) is a floor.

export interface BackoffOptions {
  /** The first attempt's cap (default 250 ms). */
  initialMs?: number;
  /** The largest cap (default 30 s). */
  maxMs?: number;
  /** A Retry-After above this is cut to it (default 5 min): a broken proxy cannot park the agent for a day. */
  maxRetryAfterMs?: number;
  /** In [0, 1); Math.random unless a test seeds one. */
  random?: () => number;
}

export class Backoff {
  /** Delays handed out since the last reset(). */
  attempts = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? 250;
    this.maxMs = opts.maxMs ?? 30_000;
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 300_000;
    this.random = opts.random ?? Math.random;
  }

  /** The cap of the next delay: initialMs doubled once per attempt so far, at most maxMs. */
  get ceilingMs(): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempts, 52));
  }

  /** The delay before the next attempt, in ms: full jitter under the ceiling, and at least `retryAfterMs`. */
  next(retryAfterMs?: number): number {
    const jittered = Math.floor(this.random() * this.ceilingMs);
    this.attempts++;
    return retryAfterMs === undefined ? jittered : Math.max(jittered, Math.min(retryAfterMs, this.maxRetryAfterMs));
  }

  /** After a success: the next delay starts small again. */
  reset(): void {
    this.attempts = 0;
  }
}

/** A Retry-After header (delay-seconds or an HTTP date) in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^[0-9]+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
