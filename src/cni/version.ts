// CNI spec versions this plugin speaks, and the per-command floors.
import { Code, CniError, brief } from "../errors.js";

export const SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = "1.1.0";

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compare two supported versions: negative, zero or positive. */
export function compareVersions(a: CniVersion, b: CniVersion): number {
  return SUPPORTED_VERSIONS.indexOf(a) - SUPPORTED_VERSIONS.indexOf(b);
}

const FLOOR: Record<string, CniVersion> = { CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0" };

/**
 * The config's version must be one we speak exactly, and new enough for the command.
 * As skel's decoder has it: absent, null and "" are 0.1.0; a value that is not a string
 * cannot be decoded (code 6).
 */
export function checkVersion(command: string, raw: unknown): CniVersion {
  if (raw !== undefined && raw !== null && typeof raw !== "string") {
    throw new CniError(
      Code.DecodingFailure,
      `cniVersion must be a version string such as "${CURRENT_VERSION}", got ${brief(raw)}`,
      `this plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
  const v = raw === undefined || raw === null || raw === "" ? "0.1.0" : raw;
  if (!isSupported(v)) {
    throw new CniError(
      Code.IncompatibleCNIVersion,
      "incompatible CNI versions",
      `config is ${brief(v)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
  const floor = FLOOR[command];
  if (floor && compareVersions(v, floor) < 0) {
    throw new CniError(
      Code.IncompatibleCNIVersion,
      `config version does not allow ${command}`,
      `${command} needs cniVersion ${floor} or later; the config says ${v}`,
    );
  }
  return v;
}
