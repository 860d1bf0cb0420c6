// The CNI handlers, and what they are given to work with: the store and the
// claims are built here from the parsed config, so tests can hand in others.
import type { Handlers } from "../cni/dispatch.js";
import type { Cidr } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import { Claims } from "../store/claims.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/store.js";
import { add } from "./add.js";
import { check } from "./check.js";
import { del } from "./del.js";
import { gc } from "./gc.js";
import { status } from "./status.js";

/** Which store serves a podCIDR (claims beside the node file): ensure = check, then claim. */
export interface StoreClaims {
  /** All or nothing: throws (code 7) before claiming any when one is served by another store. */
  ensure(cidrs: readonly Cidr[]): void;
  check(cidr: Cidr): boolean;
}

export interface Deps {
  openStore(ipam: IpamConfig, log: (msg: string) => void): Store;
  claims(ipam: IpamConfig, store: Store, log: (msg: string) => void): StoreClaims;
}

/** The store on disk, claims beside the node file. */
export const diskDeps: Deps = {
  openStore,
  claims: (ipam, store, log) => new Claims(ipam.nodeFile, store.location, log),
};

export function makeHandlers(deps: Deps = diskDeps): Handlers {
  return {
    ADD: (r) => add(r, deps),
    DEL: (r) => del(r, deps),
    CHECK: (r) => check(r, deps),
    GC: (r) => gc(r, deps),
    STATUS: (r) => status(r, deps),
  };
}

export const handlers: Handlers = makeHandlers();
