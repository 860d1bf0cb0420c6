// The CNI process protocol: env + stdin in, result or error JSON on stdout,
// logs on stderr, an exit code out. IO is injected so tests can drive it in process.
import { Code, CniError } from "../errors.js";
import type { IpamResult } from "./result.js";
import { formatResult } from "./result.js";
import { type CmdArgs, parseCommand, parseEnv } from "./env.js";
import { type NetConf, decodeStdin, parseNetConf } from "./netconf.js";
import { CURRENT_VERSION, type CniVersion, SUPPORTED_VERSIONS, checkVersion, isSupported } from "./version.js";

export interface Io {
  readonly env: Readonly<Record<string, string | undefined>>;
  readStdin(): Promise<Buffer>;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Told the call's outcome: 0, or the CNI error code answered, and the error's note (for the agent's call counts). */
  outcome?(code: number, note?: string): void;
}

export interface Request {
  readonly cmd: CmdArgs;
  readonly version: CniVersion;
  readonly conf: NetConf;
  log(msg: string): void;
}

/** ADD answers with a result; the other commands answer with nothing on success. */
export interface Handlers {
  readonly ADD: (req: Request) => Promise<IpamResult>;
  readonly DEL: (req: Request) => Promise<void>;
  readonly CHECK: (req: Request) => Promise<void>;
  readonly GC: (req: Request) => Promise<void>;
  readonly STATUS: (req: Request) => Promise<void>;
}

export async function dispatch(io: Io, handlers: Handlers): Promise<number> {
  let version: string = CURRENT_VERSION;
  try {
    const command = parseCommand(io.env.CNI_COMMAND);
    if (command === "VERSION") {
      const raw = await io.readStdin().catch(() => Buffer.alloc(0));
      let asked: unknown;
      try {
        asked = (JSON.parse(raw.toString("utf8")) as { cniVersion?: unknown }).cniVersion;
      } catch {
        /* VERSION ignores a bad stdin, as skel does */
      }
      io.stdout(`${JSON.stringify({ cniVersion: isSupported(asked) ? asked : CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS })}\n`);
      return 0;
    }
    let stdin: Buffer;
    try {
      stdin = await io.readStdin();
    } catch (err) {
      throw new CniError(Code.IOFailure, "cannot read the network config from stdin", (err as Error).message);
    }
    // Decode stdin once, before judging the environment (judged first, as skel does),
    // so that even an environment error carries the config's version.
    let obj: Record<string, unknown> | undefined;
    let decodeError: unknown;
    try {
      obj = decodeStdin(stdin);
      if (isSupported(obj.cniVersion)) version = obj.cniVersion;
    } catch (err) {
      decodeError = err;
    }
    const cmd = parseEnv(command, io.env);
    if (!obj) throw decodeError;
    const checked = checkVersion(command, obj.cniVersion);
    const conf = parseNetConf(obj, command, cmd.args);
    const log = (msg: string): void => io.stderr(`podcidr-ipam ${command} ${cmd.containerID}: ${msg}\n`);
    const req: Request = { cmd, version: checked, conf, log };
    if (command === "ADD") io.stdout(`${JSON.stringify(formatResult(await handlers.ADD(req), checked))}\n`);
    else await handlers[command](req);
    io.outcome?.(0);
    return 0;
  } catch (err) {
    const e =
      err instanceof CniError
        ? err
        : new CniError(
            Code.Internal,
            `internal error: ${(err as Error)?.message ?? String(err)}`,
            "this is a bug in podcidr-ipam; the store was left as it was",
          );
    if (!(err instanceof CniError)) io.stderr(`podcidr-ipam: ${(err as Error)?.stack ?? String(err)}\n`);
    io.stdout(`${JSON.stringify(e.toJSON(version))}\n`);
    io.outcome?.(e.code, e.note);
    return 1;
  }
}
