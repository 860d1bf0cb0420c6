// What the command handlers need from persistence, and nothing more.
// One implementation lives in disk.ts; tests may bring an in-memory one.
//
// One store per dataDir, shared by every network on the node: the podCIDR's
// bitmap belongs to the node, an attachment to (network, container ID, interface).
import type { RangeState } from "../ipam/allocator.js";
import type { Cidr } from "../ipam/cidr.js";
import type { HistoryEvent } from "./checkpoint.js";

/** Names one attachment: a network's interface in one container. */
export interface AttachmentKey {
  /** The network config's "name". */
  readonly network: string;
  readonly containerID: string;
  readonly ifname: string;
}

/** Who holds an address: one attachment. */
export interface AttachmentRecord extends AttachmentKey {
  /** CNI_NETNS of the ADD that made it ("" for records migrated from an older store). */
  readonly netns: string;
  /** "<dev>:<inode>" of that netns file when the ADD could stat it, else "": tells a netns recreated at the same path apart. */
  readonly netnsId: string;
  /** K8S_POD_NAMESPACE / K8S_POD_NAME from CNI_ARGS, "" when not given. */
  readonly namespace: string;
  readonly pod: string;
  /** ISO 8601 time of the ADD that made it. */
  readonly createdAt: string;
  /** The addresses held, each with the podCIDR it came from. */
  readonly ips: readonly { readonly cidr: string; readonly address: string }[];
  /** The kernel's boot ID at the ADD that made it (absent in records of older stores): releaseOnReboot. */
  readonly boot?: string;
}

/** A file that failed to load, and why. */
export interface Damaged {
  readonly file: string;
  readonly reason: string;
  /** The podCIDR whose bitmap this is, when it is one. */
  readonly cidr?: Cidr;
  /** A damaged range file that still parses: the offsets its bitmap marks (kept taken by repair). */
  readonly salvaged?: { readonly cidr: Cidr; readonly offsets: readonly number[] };
  /** A damaged log record: the addresses still legible in it, per podCIDR (kept taken by repair). */
  readonly held?: readonly { readonly cidr: Cidr; readonly offsets: readonly number[] }[];
  /** Records ("network/containerID/ifname") of a damaged part that repair took back from the checkpoint's history. */
  readonly recovered?: readonly string[];
}

/** A view of the store inside the lock. Changes are written on commit. */
export interface Tx {
  /** The bitmap of a podCIDR (an empty one if none is stored yet). Changes must be marked with `touch`. */
  range(cidr: Cidr): RangeState;
  /** Every range stored, including ones for CIDRs no node file lists any more. */
  storedRanges(): RangeState[];
  /** Mark a range changed. False when it will not be written: its file failed to load (only repair rewrites it). */
  touch(range: RangeState): boolean;
  attachment(key: AttachmentKey): AttachmentRecord | null;
  /** The networks that hold attachments (one readdir). */
  networks(): string[];
  /** Every attachment of one network, or of all of them (reads them all: for GC, status and repair). */
  attachments(network?: string): AttachmentRecord[];
  putAttachment(rec: AttachmentRecord): void;
  deleteAttachment(key: AttachmentKey): void;
  /** Files that failed to load (when tolerated: salvage or skipDamaged; empty otherwise). */
  corrupt(): readonly Damaged[];
  /** releaseOnReboot: the boot ID at which `network`'s attachments of earlier boots were last released ("" never). */
  sweptAt?(network: string): string;
  /** releaseOnReboot: note that `network`'s attachments of boots before `boot` were released. */
  sweep?(network: string, boot: string): void;
  /** Who held what, as kept (the log store: 30 days, 10,000 events): the checkpoint's history, then the log's. */
  history?(): readonly HistoryEvent[];
}

export interface TransactOptions {
  /** Create the store if missing. Otherwise a missing store reads as empty and cannot be written. */
  readonly create: boolean;
  /** The caller only reads: on a read-only or full filesystem, read without the lock rather than fail. */
  readonly readOnly?: boolean;
  /** Repair: files that fail to load are noted (Tx.corrupt) and moved to quarantine/ on commit. */
  readonly salvage?: boolean;
  /** GC, DEL, status: a file that fails to load is noted (Tx.corrupt) and skipped, never moved. */
  readonly skipDamaged?: boolean;
  /** The call frees space (DEL, GC): on a full disk it may use the store's reserve to finish. */
  readonly frees?: boolean;
  /** Take no lock and write nothing (repair --dry-run, STATUS): a pending journal is read as if applied. */
  readonly unlocked?: boolean;
}

export interface Store {
  /** Where the store lives (the folder), for messages and for the claims beside the node file. */
  readonly location: string;
  /**
   * Run fn under the store's lock; commit what it changed atomically and durably before resolving.
   * fn must have no effect outside tx: it may run twice (once against the empty store before a
   * store is created, so that a call that fails anyway creates nothing).
   */
  transact<T>(opts: TransactOptions, fn: (tx: Tx) => T): Promise<{ value: T; waitedMs: number }>;
}
