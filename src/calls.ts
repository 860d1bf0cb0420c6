// How a CNI call tells the agent it happened, for the agent's metrics: one line
// appended to a file the agent made on the node's tmpfs, no fsync, no waiting.
// The file is opened without O_CREAT: with no agent (no file) this costs one
// failed open. The agent reads the new lines, counts them, and rotates the file.
//
//   <unix ms> <command> <code> <ms since the process started> <container ID or -> <note or ->
//
// A note marks a multi-pool ADD refused for a pool the node has no CIDR of
// (`pool=<name>/<family>`): the agent counts it as that pool's pending demand until the
// same container's ADD succeeds.
import { closeSync, constants, openSync, writeSync } from "node:fs";

export const CALLS_LOG = "/run/podcidr-ipam/calls.log";

export function recordCall(path: string, command: string, code: number, ms: number, extra = { id: "", note: "" }): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return; // no agent on this node
  }
  try {
    // One write of one short line: O_APPEND keeps concurrent calls' lines whole.
    // A container ID is [A-Za-z0-9_.-] (src/cni/env.ts), a note has no space: the fields stay whole.
    writeSync(fd, `${Date.now()} ${command} ${code} ${ms.toFixed(1)} ${extra.id || "-"} ${extra.note || "-"}\n`);
  } catch {
    /* the agent's tmpfs is full: the count is lost, the call is not */
  } finally {
    closeSync(fd);
  }
}
