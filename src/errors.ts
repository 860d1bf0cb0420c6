// The one error type. Every layer throws it; only the dispatcher turns it into
// the CNI error object on stdout. Codes 0-99 are the spec's, 100+ are ours and
// are listed in the README ("Error codes").

export const Code = {
  IncompatibleCNIVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironmentVariables: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  LimitedConnectivity: 51,
  // --- plugin-specific ---
  /** Every podCIDR of a family is full. */
  PoolExhausted: 100,
  /** A requested address is outside the podCIDRs, reserved, or held by someone else. */
  RequestedAddressUnavailable: 101,
  /** The node file is unreadable, not JSON, the wrong kind, or lists a bad CIDR. */
  InvalidNodeFile: 102,
  /** The store on disk fails to load (checksum, version, format). Never reset silently. */
  StoreCorrupt: 103,
  /** CHECK: the attachment does not hold the addresses in prevResult. */
  CheckFailed: 104,
  /** A filesystem operation on the store failed (ENOSPC, EROFS, EACCES, ...). */
  StoreIOFailure: 105,
  /** ADD for an attachment that exists in the same netns (its interface is there already). */
  AttachmentExists: 106,
  Internal: 999,
} as const;

export class CniError extends Error {
  readonly code: number;
  readonly details: string;
  /** For the calls log only (never on stdout): `pool=<name>/<family>` for a pool the node has no CIDR of (multi-pool). */
  readonly note: string;

  constructor(code: number, msg: string, details = "", options?: { cause?: unknown; note?: string }) {
    super(msg, options);
    this.name = "CniError";
    this.code = code;
    this.details = details;
    this.note = options?.note ?? "";
  }

  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details: string } {
    return { cniVersion, code: this.code, msg: this.message, details: this.details };
  }
}

/**
 * A short, safe rendering of a bad value for a message: JSON, cut at `max`
 * characters, and never a crash (a value nested thousands deep cannot be
 * stringified without running out of stack).
 */
export function brief(v: unknown, max = 100): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? "[...] (nested too deep)" : typeof v === "object" && v !== null ? "{...} (nested too deep)" : String(v);
  }
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** A node.js system error code (ENOENT, ...) or undefined. */
export function errno(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}
