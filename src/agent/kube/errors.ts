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

/**
 * A 403 as a person can act on it: who may not do what (from the API server's Status
 * message), the RBAC rule that allows it, where the project's manifest has it, and how to
 * check. `resource` is "nodes" or "ciliumnodes.cilium.io" (plural.group).
 */
export function forbidden(err: KubeError, resource: string, context = ""): KubeError {
  const dot = resource.indexOf(".");
  const [plural, group] = dot < 0 ? [resource, ""] : [resource.slice(0, dot), resource.slice(dot + 1)];
  const m = /User "([^"]+)" cannot (\w+) resource/.exec(err.message);
  const who = m ? `${m[1]} may not ${m[2]} ${resource}` : `the API server does not let these credentials read ${resource}`;
  const rule = `{apiGroups: [${JSON.stringify(group)}], resources: [${plural}], verbs: [get, list, watch]}`;
  const check = m ? `; check with: kubectl auth can-i ${m[2]} ${resource} --as=${m[1]}` : "";
  return new KubeError(
    `forbidden: ${who}${context ? ` (${context})` : ""}: its ServiceAccount needs a ClusterRole with the rule ${rule} ` +
      `and a ClusterRoleBinding to it, as deploy/podcidr-ipam.yaml has them (ClusterRole and ClusterRoleBinding podcidr-ipam)${check}. ` +
      `The API server said: ${err.message}`,
    { status: err.status, reason: err.reason, cause: err },
  );
}
