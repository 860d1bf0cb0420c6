// The agent's Kubernetes client has one error type. It is not a CniError: it never
// reaches a CNI runtime's stdout, and what the caller branches on is the HTTP status
// (410 relist, 403 report, 5xx back off), not a CNI code.

export class KubeError extends Error {
  /** The HTTP status (or an ERROR event's Status.code); 0 when no response came (network, timeout, configuration). */
  readonly status: number;
  /**
   * Status.reason ("Forbidden", "Expired", "NotFound", ...), the system error code
   * ("ECONNREFUSED", "ECONNRESET"), "Timeout", "BadResponse" or "BadConfig".
   */
  readonly reason: string;
  /** What to do about it, when known ("" otherwise). */
  readonly details: string;
  /** From a Retry-After header (429, 503), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    fields: { status?: number; reason?: string; details?: string; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = "KubeError";
    this.status = fields.status ?? 0;
    this.reason = fields.reason ?? "";
    this.details = fields.details ?? "";
    this.retryAfterMs = fields.retryAfterMs;
  }
}

/** A configuration error (kubeconfig, service account files): status 0, reason "BadConfig". */
export function configError(message: string, details = ""): KubeError {
  return new KubeError(message, { reason: "BadConfig", details });
}
