// What the command handlers need from persistence, and nothing more.
// One implementation lives in disk.ts; tests may bring an in-memory one.
import type { RangeState } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";

/** Who holds an address: one (container ID, interface) attachment. */
export interface AttachmentRecord {
  readonly containerID: string;
  readonly ifname: string;
  /** K8S_POD_NAMESPACE / K8S_POD_NAME from CNI_ARGS, "" when not given. */
  readonly namespace: string;
  readonly pod: string;
  /** ISO 8601 time of the ADD that made it. */
  readonly createdAt: string;
  /** The addresses held, each with the podCIDR it came from. */
  readonly ips: readonly { readonly cidr: string; readonly address: string }[];
}

/** A view of one network's store inside the lock. Changes are written on commit. */
export interface Tx {
  /** The bitmap of a podCIDR (an empty one if none is stored yet). Changes must be marked with `touch`. */
  range(cidr: Cidr): RangeState;
  /** Every range stored for this network, including ones for CIDRs the node file no longer lists. */
  storedRanges(): RangeState[];
  touch(range: RangeState): void;
  attachment(containerID: string, ifname: string): AttachmentRecord | null;
  /** Every attachment (reads them all: for GC and status, not for ADD/DEL). */
  attachments(): AttachmentRecord[];
  putAttachment(rec: AttachmentRecord): void;
  deleteAttachment(containerID: string, ifname: string): void;
  /** Files that failed to load (only in salvage mode; empty otherwise). */
  corrupt(): readonly { readonly file: string; readonly reason: string }[];
}

export interface TransactOptions {
  /** Create the network's folder if missing. Otherwise a missing store reads as empty and cannot be written. */
  readonly create: boolean;
  /** The caller only reads: on a read-only filesystem, read without the lock rather than fail. */
  readonly readOnly?: boolean;
  /** Repair: files that fail to load are noted (Tx.corrupt) and moved to quarantine/ on commit. */
  readonly salvage?: boolean;
  /** Run fn but write nothing (repair --dry-run). */
  readonly dryRun?: boolean;
}

export interface Store {
  /** Run fn under the network's lock; commit what it changed atomically and durably before resolving. */
  transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<T>;
}
