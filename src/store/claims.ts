// A podCIDR is served by one store. Every network that reads a node file shares
// the store of its dataDir; a second dataDir over the same podCIDR would hand
// out the same addresses again. So each store claims the podCIDRs it allocates
// from, in a place every store reading that node file sees, beside the file:
//
//   <nodeFile>.claims/range-10.0.2.0_24.json    {"store": "/var/lib/cni/podcidr-ipam/_store", ...}
//
// A claim of another store that still holds addresses in that podCIDR refuses
// the allocation (code 7). A claim whose store holds none there any more (it was
// emptied, or moved away) is taken over, and the takeover logged.
import { mkdirSync, readdirSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { Code, CniError, errno } from "../errors.js";
import { type Cidr, overlaps } from "../ipam/cidr.js";
import * as codec from "./codec.js";
import { isLogStore, load, txOf } from "./engine.js";
import { fsyncDir, ioError, readFileNoFollow, writeAtomic } from "./io.js";

export class Claims {
  private readonly folder: string;
  private readonly done = new Set<string>();
  private real: string | undefined;

  constructor(
    private readonly nodeFile: string,
    private readonly storeDir: string,
    private readonly log: (msg: string) => void,
  ) {
    this.folder = `${nodeFile}.claims`;
  }

  /**
   * Make sure this store may allocate from every one of `cidrs`, and claim those nobody has. Throws code 7
   * if another store serves one, before writing any claim: a refused ADD leaves none behind.
   */
  ensure(cidrs: readonly Cidr[]): void {
    const todo = cidrs.filter((c) => !this.done.has(c.text));
    const mine = todo.map((c) => this.check(c));
    todo.forEach((c, i) => {
      if (!mine[i]) this.write(join(this.folder, codec.rangeFileName(c.text)), c);
      this.done.add(c.text);
    });
  }

  /** Throws code 7 if another store that holds addresses claims `cidr` or one overlapping it; true if this store holds the claim. */
  check(cidr: Cidr): boolean {
    // The same podCIDR, or one that overlaps it (the node's CIDR was replaced by a larger or smaller one).
    let mine = false;
    for (const [claimed, file] of this.claimsOverlapping(cidr)) {
      const other = this.claimant(file);
      if (other === null) continue;
      if (this.isMe(other)) {
        if (claimed.text === cidr.text) mine = true;
        continue;
      }
      const held = heldIn(other, claimed);
      if (held > 0) {
        throw new CniError(
          Code.InvalidNetworkConfig,
          `podCIDR ${cidr.text} is served by another store, ${other}, which holds ${held} address(es) in ${claimed.text}; this ` +
            `network's store is ${this.storeDir}`,
          `Two stores over one podCIDR would hand out the same addresses. Give every network that reads ${this.nodeFile} the same ` +
            `ipam.dataDir ` +
            `(they share one store), or release the other store's addresses first. The claim is ${file}.`,
        );
      }
      if (claimed.text === cidr.text) this.log(`taking over the claim on ${cidr.text} from ${other}, which holds no address in it`);
    }
    return mine;
  }

  /** Claim files of CIDRs that overlap `cidr` (its own included), with their paths. */
  private claimsOverlapping(cidr: Cidr): [Cidr, string][] {
    let names: string[];
    try {
      names = readdirSync(this.folder);
    } catch {
      return [];
    }
    const out: [Cidr, string][] = [];
    for (const n of names) {
      const c = codec.parseRangeName(n);
      if (c && overlaps(c, cidr)) out.push([c, join(this.folder, n)]);
    }
    return out;
  }

  // --- internal ---

  private claimant(path: string): string | null {
    let text: string | null;
    try {
      text = readFileNoFollow(path, 4096);
    } catch {
      return null; // unreadable: rewritten below
    }
    if (text === null) return null;
    try {
      const o = JSON.parse(text) as { store?: unknown };
      return typeof o.store === "string" ? o.store : null;
    } catch {
      return null;
    }
  }

  private isMe(store: string): boolean {
    if (store === this.storeDir) return true;
    this.real ??= realOrSelf(this.storeDir);
    return realOrSelf(store) === this.real;
  }

  private write(path: string, cidr: Cidr): void {
    try {
      try {
        mkdirSync(this.folder, { mode: 0o755 });
      } catch (err) {
        if (errno(err) !== "EEXIST") throw err;
      }
      writeAtomic(
        path,
        `${JSON.stringify({ format: "podcidr-ipam/claim", cidr: cidr.text, store: realOrSelf(this.storeDir), at: nowIso() })}\n`,
      );
      fsyncDir(this.folder);
    } catch (err) {
      const e = ioError(err, `cannot write the claim ${path}`);
      // A folder we may not write (read-only) cannot protect: say so, but do not fail pod starts for it.
      if (/EROFS|EACCES|EPERM/.test(e.message)) {
        this.log(`${e.message}: a second dataDir over ${cidr.text} would not be detected`);
        return;
      }
      throw e;
    }
  }
}

// --- internal ---

function nowIso(): string {
  return new Date().toISOString();
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** How many addresses the store at `storeDir` holds in `cidr` (0 when it has no such range, or it cannot be read). */
function heldIn(storeDir: string, cidr: Cidr): number {
  if (isLogStore(storeDir)) {
    try {
      const view = load(storeDir, false);
      try {
        return txOf(view, { writable: view.base !== null, skipDamaged: true }).range(cidr).allocated;
      } finally {
        view.close();
      }
    } catch {
      return 1; // a store there that does not load may well hold live addresses
    }
  }
  const file = join(storeDir, codec.rangeFileName(cidr.text));
  try {
    const text = readFileNoFollow(file, 1 << 23);
    return text === null ? 0 : codec.decodeRange(text, file).allocated;
  } catch {
    // A range file there that does not load may well hold live addresses.
    return 1;
  }
}
