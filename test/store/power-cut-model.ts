// A model of what a power cut may leave of a folder's files, fed with the
// operations the store reports through its io layer (src/store/io.ts ioTrace):
// writes, fdatasyncs, creates, renames, unlinks, mkdirs and folder fsyncs.
//
//  - A file's writes since its last fdatasync may be lost: any suffix of them,
//    and the first write lost may be torn (some of its sectors on disk, the
//    others not: every prefix and suffix of it at sector boundaries, and each
//    sector alone).
//  - A folder operation (create, rename, unlink, mkdir) is durable once every
//    folder it touches was fsynced after it; until then it may be undone: any
//    suffix of the operations not yet durable is lost (ext4 commits metadata in
//    order).
// states() enumerates every combination, one crash point at a time.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import type { IoEvent } from "../../src/store/io";

const SECTOR = 512;
const PAGE = 4096;

interface Write {
  readonly offset: number;
  readonly data: Buffer;
}

interface Inode {
  durable: Buffer;
  pending: Write[];
}

type DirOp =
  | { kind: "link"; name: string; ino: number }
  | { kind: "rename"; from: string; to: string }
  | { kind: "unlink"; name: string }
  | { kind: "mkdir"; name: string };

interface PendingOp {
  readonly op: DirOp;
  /** Folders (relative) still to be fsynced before it is durable. */
  readonly needs: Set<string>;
}

/** One state a power cut could leave: relative path -> bytes (folders implied), and how it came about. */
export interface CrashState {
  readonly files: Map<string, Buffer>;
  readonly dirs: Set<string>;
  readonly how: string;
}

export class PowerCutModel {
  private readonly inodes: Inode[] = [];
  /** What is on disk for sure: name -> inode (files), and folders. */
  private durableNames = new Map<string, number>();
  private durableDirs = new Set<string>();
  /** The namespace as the running process sees it. */
  private liveNames = new Map<string, number>();
  private liveDirs = new Set<string>();
  private pendingOps: PendingOp[] = [];

  /** `root`: the folder modelled (paths are kept relative to it). Its files now are taken as durable. */
  constructor(private readonly root: string) {
    const walk = (rel: string): void => {
      for (const n of readdirSync(join(root, rel))) {
        const r = rel ? `${rel}/${n}` : n;
        if (/^(lock|lock\.owner|lock\.reap|queue)$/.test(r)) continue;
        const st = statSync(join(root, r));
        if (st.isDirectory()) {
          this.durableDirs.add(r);
          this.liveDirs.add(r);
          walk(r);
        } else if (st.isFile()) {
          const ino = this.inodes.push({ durable: readFileSync(join(root, r)), pending: [] }) - 1;
          this.durableNames.set(r, ino);
          this.liveNames.set(r, ino);
        }
      }
    };
    walk("");
  }

  /** Feed one operation the store made. Operations outside the folder are ignored. */
  apply(e: IoEvent): void {
    const rel = this.rel(e.path);
    if (rel === null) return;
    switch (e.op) {
      case "create": {
        const ino = this.inodes.push({ durable: Buffer.alloc(0), pending: [] }) - 1;
        this.liveNames.set(rel, ino);
        this.dirOp({ kind: "link", name: rel, ino }, [parent(rel)]);
        return;
      }
      case "write":
        this.inode(rel).pending.push({ offset: e.offset, data: e.data });
        return;
      case "sync": {
        const ino = this.inode(rel);
        ino.durable = apply(ino.durable, ino.pending);
        ino.pending = [];
        return;
      }
      case "rename": {
        const to = this.rel(e.to)!;
        if (!this.liveNames.has(rel) && !this.liveDirs.has(rel)) throw new Error(`model: rename of ${rel}, which it does not know`);
        const op: DirOp = { kind: "rename", from: rel, to };
        applyOp({ names: this.liveNames, dirs: this.liveDirs }, op);
        this.dirOp(op, [parent(rel), parent(to)]);
        return;
      }
      case "unlink":
        this.liveNames.delete(rel);
        this.dirOp({ kind: "unlink", name: rel }, [parent(rel)]);
        return;
      case "mkdir":
        this.liveDirs.add(rel);
        this.dirOp({ kind: "mkdir", name: rel }, [parent(rel)]);
        return;
      case "syncdir": {
        for (const p of this.pendingOps) p.needs.delete(rel);
        // What is durable now leaves the list, in order, while it stays in order.
        while (this.pendingOps.length && this.pendingOps[0]!.needs.size === 0) applyOp(this.durable(), this.pendingOps.shift()!.op);
        return;
      }
    }
  }

  /** Every state a power cut now could leave. */
  *states(): Generator<CrashState> {
    for (let j = 0; j <= this.pendingOps.length; j++) {
      // The first j folder operations not yet durable survive (and any later one already durable).
      const ns = { names: new Map(this.durableNames), dirs: new Set(this.durableDirs) };
      this.pendingOps.forEach((p, i) => {
        if (i < j || p.needs.size === 0) applyOp(ns, p.op);
      });
      const used = [...new Set(ns.names.values())];
      const choices = used.map((ino) => variants(this.inodes[ino]!));
      for (const pick of product(choices)) {
        const files = new Map<string, Buffer>();
        const hows: string[] = [];
        for (const [name, ino] of ns.names) {
          const v = pick[used.indexOf(ino)]!;
          files.set(name, v.data);
          if (v.how) hows.push(`${name}: ${v.how}`);
        }
        yield {
          files,
          dirs: ns.dirs,
          how: `${j}/${this.pendingOps.length} folder op(s) not yet durable kept${hows.length ? `; ${hows.join("; ")}` : ""}`,
        };
      }
    }
  }

  /** The state with every write and folder operation on disk (what the process sees). */
  live(): CrashState {
    const files = new Map<string, Buffer>();
    for (const [name, ino] of this.liveNames) files.set(name, apply(this.inodes[ino]!.durable, this.inodes[ino]!.pending));
    return { files, dirs: new Set(this.liveDirs), how: "everything on disk" };
  }

  // --- internal ---

  private durable(): { names: Map<string, number>; dirs: Set<string> } {
    return { names: this.durableNames, dirs: this.durableDirs };
  }

  private dirOp(op: DirOp, dirs: string[]): void {
    this.pendingOps.push({ op, needs: new Set(dirs) });
  }

  private inode(rel: string): Inode {
    const ino = this.liveNames.get(rel);
    if (ino === undefined) throw new Error(`model: ${rel} is written or synced but was never seen`);
    return this.inodes[ino]!;
  }

  private rel(path: string): string | null {
    const r = relative(this.root, path);
    return r.startsWith("..") ? null : r === "" ? "." : r;
  }
}

/** Write a state into `dir` (which must be empty). */
export function materialize(dir: string, s: CrashState): void {
  for (const d of [...s.dirs].sort()) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  for (const [name, data] of s.files) {
    mkdirSync(dirname(join(dir, name)), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, name), data, { mode: 0o600 });
  }
}

// --- internal ---

function parent(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "." : rel.slice(0, i);
}

function applyOp(ns: { names: Map<string, number>; dirs: Set<string> }, op: DirOp): void {
  if (op.kind === "link") ns.names.set(op.name, op.ino);
  else if (op.kind === "unlink") ns.names.delete(op.name);
  else if (op.kind === "mkdir") ns.dirs.add(op.name);
  else if (ns.dirs.has(op.from)) {
    // A folder: everything under it moves with it.
    const move = (p: string): string => (p === op.from ? op.to : p.startsWith(`${op.from}/`) ? op.to + p.slice(op.from.length) : p);
    for (const d of [...ns.dirs]) {
      ns.dirs.delete(d);
      ns.dirs.add(move(d));
    }
    for (const [n, ino] of [...ns.names]) {
      ns.names.delete(n);
      ns.names.set(move(n), ino);
    }
  } else {
    const ino = ns.names.get(op.from);
    // A rename of a file whose creation was undone renames nothing.
    if (ino === undefined) return;
    ns.names.delete(op.from);
    ns.names.set(op.to, ino);
  }
}

function apply(base: Buffer, writes: readonly Write[]): Buffer {
  let out = base;
  for (const w of writes) out = patch(out, w.offset, w.data);
  return out;
}

function patch(base: Buffer, offset: number, data: Buffer): Buffer {
  const out = Buffer.alloc(Math.max(base.length, offset + data.length));
  base.copy(out);
  data.copy(out, offset);
  return out;
}

/** What one file may hold after a power cut: k of its pending writes kept, and the next one torn or not. */
function variants(ino: Inode): { data: Buffer; how: string }[] {
  const out: { data: Buffer; how: string }[] = [];
  let base = ino.durable;
  for (let k = 0; k <= ino.pending.length; k++) {
    out.push({ data: base, how: ino.pending.length ? `${k}/${ino.pending.length} write(s) since its sync kept` : "" });
    const w = ino.pending[k];
    if (!w) break;
    for (const [from, to, what] of tears(w)) {
      out.push({ data: patch(base, w.offset + from, w.data.subarray(from, to)), how: `${k} kept, write ${k + 1} torn (${what})` });
    }
    base = patch(base, w.offset, w.data);
  }
  return out;
}

/**
 * The parts of a write a torn one may have put on disk: every prefix and suffix cut at a sector
 * boundary (at a page boundary inside long writes, at sector boundaries in their first and last
 * page), and each sector alone for writes of at most 16 sectors.
 */
function tears(w: Write): [number, number, string][] {
  const start = w.offset;
  const end = w.offset + w.data.length;
  const cuts = new Set<number>();
  const sectors = Math.ceil(end / SECTOR) - Math.floor(start / SECTOR);
  for (let b = Math.ceil((start + 1) / SECTOR) * SECTOR; b < end; b += SECTOR) {
    const nearEdge = b - start < PAGE || end - b < PAGE;
    if (sectors <= 16 || nearEdge || b % PAGE === 0) cuts.add(b - start);
  }
  const out: [number, number, string][] = [];
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push([0, c, `its first ${c} bytes`]);
    out.push([c, w.data.length, `its last ${w.data.length - c} bytes`]);
  }
  if (sectors <= 16 && sectors > 1) {
    const edges = [0, ...[...cuts].sort((a, b) => a - b), w.data.length];
    for (let i = 0; i + 1 < edges.length; i++) out.push([edges[i]!, edges[i + 1]!, `only bytes ${edges[i]}-${edges[i + 1]}`]);
  }
  return out;
}

function* product<T>(choices: T[][]): Generator<T[]> {
  if (choices.length === 0) {
    yield [];
    return;
  }
  const [head, ...rest] = choices;
  for (const h of head!) for (const r of product(rest)) yield [h, ...r];
}
