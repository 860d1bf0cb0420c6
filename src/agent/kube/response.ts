// Reading a (non-stream) response body, and turning a status >= 300 into a KubeError with
// the Status object's reason and message (or, for a proxy's HTML page, its first bytes).
import { type IncomingHttpHeaders, type IncomingMessage, STATUS_CODES } from "node:http";
import { parseRetryAfter } from "./backoff.js";
import { KubeError } from "./errors.js";

/** For the agent's metrics: requests sent (retries included), and failures by HTTP status, "network" or "timeout". */
export interface ApiCounters {
  requests: number;
  errors: Record<string, number>;
}

const MAX_BODY = 64 << 20;

export function countError(c: ApiCounters, key: string): void {
  c.errors[key] = (c.errors[key] ?? 0) + 1;
}

/** The whole body as text; rejects with the stream's error, or a KubeError when it is too slow or too large. */
export function readBody(res: IncomingMessage, what: string, timeoutMs: number, counters: ApiCounters): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      countError(counters, "timeout");
      res.destroy(new KubeError(`${what}: the response body did not arrive within ${timeoutMs} ms`, { reason: "Timeout" }));
    }, timeoutMs);
    res.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) res.destroy(new KubeError(`${what}: response larger than ${MAX_BODY} bytes`, { reason: "BadResponse" }));
      else chunks.push(c);
    });
    res.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("utf8"));
    });
    res.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** `what: 403 Forbidden: nodes "x" is forbidden: User ...`, counted under the status. */
export function statusError(counters: ApiCounters, what: string, status: number, headers: IncomingHttpHeaders, text: string): KubeError {
  countError(counters, String(status));
  let st: { reason?: unknown; message?: unknown } = {};
  try {
    const j = JSON.parse(text) as { kind?: unknown };
    if (j && j.kind === "Status") st = j as typeof st;
  } catch {
    /* not JSON: an HTML error page from a proxy, say */
  }
  const reason = typeof st.reason === "string" && st.reason ? st.reason : (STATUS_CODES[status] ?? "").replace(/[^A-Za-z]/g, "");
  const message = typeof st.message === "string" && st.message ? st.message : text.trim().slice(0, 300) || (STATUS_CODES[status] ?? "");
  const retryAfterMs = parseRetryAfter(headers["retry-after"]);
  return new KubeError(`${what}: ${status} ${reason}: ${message}`, {
    status,
    reason,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}
