// STATUS: every reason ADD would fail is code 50 (PluginNotAvailable), keeping
// the original message, and the original code and details in `details`.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Request } from "../../src/cni/dispatch.js";
import { parseCniArgs, parseEnv } from "../../src/cni/env.js";
import { parseNetConf } from "../../src/cni/netconf.js";
import { CniError, Code } from "../../src/errors.js";
import { add } from "../../src/commands/add.js";
import { diskDeps } from "../../src/commands/index.js";
import { status as statusHandler } from "../../src/commands/status.js";
import { ciliumNode } from "../helpers/node";

const status = (req: Request): Promise<void> => statusHandler(req, diskDeps);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-status-"));
  writeFileSync(join(dir, "node.json"), JSON.stringify(ciliumNode(["10.0.2.0/24"])));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The store's base state (its checkpoint slot of generation 1). */
const RANGE = () => join(dir, "data", "_store", "checkpoint.0");

function request(command: "ADD" | "STATUS", ipam: Record<string, unknown> = {}): Request {
  const env = { CNI_CONTAINERID: "c1", CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" };
  const obj = {
    cniVersion: "1.1.0",
    name: "podnet",
    ipam: { type: "podcidr-ipam", nodeFile: join(dir, "node.json"), dataDir: join(dir, "data"), waitForPodCIDRs: 0, ...ipam },
  };
  return { cmd: parseEnv(command, env), version: "1.1.0", conf: parseNetConf(obj, command, parseCniArgs("")), log: () => {} };
}

async function statusFailure(): Promise<CniError> {
  try {
    await status(request("STATUS"));
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error("expected STATUS to fail");
}

/** What ADD answers in the same state (it must fail too). */
async function addFailure(): Promise<CniError> {
  try {
    await add({ ...request("ADD"), cmd: parseEnv("ADD", { CNI_CONTAINERID: "c2", CNI_NETNS: "/x", CNI_IFNAME: "eth0" }) }, diskDeps);
  } catch (err) {
    return err as CniError;
  }
  throw new Error("expected ADD to fail");
}

describe("status", () => {
  it("succeeds when ADD can be served", async () => {
    await add(request("ADD"), diskDeps);
    await expect(status(request("STATUS"))).resolves.toBeUndefined();
  });

  it("answers a damaged store file (ADD: 103) with 50, keeping the 103 message and code", async () => {
    await add(request("ADD"), diskDeps);
    writeFileSync(RANGE(), "x");
    const fromAdd = await addFailure();
    expect(fromAdd.code).toBe(Code.StoreCorrupt);
    const err = await statusFailure();
    expect(err.code).toBe(Code.PluginNotAvailable);
    expect(err.message).toBe(fromAdd.message);
    expect(err.details).toBe(`code 103: ${fromAdd.details}`);
  });

  it("answers a symbolic link in the store (ADD: 105) with 50 and code 105 in the details", async () => {
    await add(request("ADD"), diskDeps);
    unlinkSync(RANGE());
    symlinkSync(join(dir, "node.json"), RANGE());
    const err = await statusFailure();
    expect(err.code).toBe(Code.PluginNotAvailable);
    expect(err.message).toContain("ELOOP");
    expect(err.details).toMatch(/^code 105: /);
  });

  it("answers a missing node file (ADD: 11) with 50 and code 11 in the details", async () => {
    rmSync(join(dir, "node.json"));
    const err = await statusFailure();
    expect(err.code).toBe(Code.PluginNotAvailable);
    expect(err.message).toBe(`node file ${join(dir, "node.json")} does not exist`);
    expect(err.details).toMatch(/^code 11: /);
  });

  it("does not wait for a held lock: it reads the store without it", async () => {
    await add(request("ADD"), diskDeps);
    mkdirSync(join(dir, "data", "_store", "lock"));
    const started = Date.now();
    await expect(status(request("STATUS", { lockTimeout: 30 }))).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
