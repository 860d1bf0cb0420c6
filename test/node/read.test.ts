// Reading the node file while a sync job writes it: empty, half-written, late.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { failure } from "../helpers/errors";
import { CniError, Code } from "../../src/errors.js";
import { type IpamConfig, parseIpamConfig } from "../../src/ipam/config.js";
import { loadNode, readNode } from "../../src/node/read.js";
import { ciliumNode } from "../helpers/node";

const NODE = JSON.stringify(ciliumNode(["10.0.2.0/24"]));

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "podcidr-ipam-node-"));
  path = join(dir, "node.json");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ipam = (waitForPodCIDRs: number): IpamConfig => parseIpamConfig({ nodeFile: path, dataDir: join(dir, "data"), waitForPodCIDRs });

/** The CniError loadNode rejects with, and how long it took. */
async function loadFailure(cfg: IpamConfig): Promise<{ err: CniError; ms: number }> {
  const t0 = Date.now();
  try {
    await loadNode(cfg, true);
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return { err: err as CniError, ms: Date.now() - t0 };
  }
  throw new Error("expected loadNode to fail");
}

describe("readNode", () => {
  it("returns null for a missing file", () => {
    expect(readNode(path)).toBeNull();
  });

  it("reports an empty file as empty, not as missing (code 11)", () => {
    writeFileSync(path, "");
    const err = failure(() => readNode(path));
    expect(err.code).toBe(Code.TryAgainLater);
    expect(err.message).toBe(`node file ${path} is empty: the sync job may be writing it in place; write a temp file and mv it`);
    expect(err.details).toContain(`mv ${path}.tmp ${path}`);
  });

  it("reports a half-written file as not JSON (102) at once", () => {
    writeFileSync(path, NODE.slice(0, 40));
    const err = failure(() => readNode(path));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${path}: is not JSON`);
  });
});

describe("loadNode (ADD)", () => {
  it("fails an empty file with 11 saying it is empty, and how long it waited", async () => {
    writeFileSync(path, "");
    expect((await loadFailure(ipam(0))).err.message).toBe(
      `node file ${path} is empty: the sync job may be writing it in place; write a temp file and mv it`,
    );
    const { err } = await loadFailure(ipam(0.3));
    expect(err.code).toBe(Code.TryAgainLater);
    expect(err.message).toBe(
      `node file ${path} is empty after waiting 0.3s: the sync job may be writing it in place; write a temp file and mv it`,
    );
  });

  it("waits for an empty file to be written", async () => {
    writeFileSync(path, "");
    setTimeout(() => writeFileSync(path, NODE), 300);
    expect((await loadNode(ipam(3), true)).podCIDRs.map((c) => c.text)).toEqual(["10.0.2.0/24"]);
  });

  it("waits for a half-written file to be complete, re-reading it every poll", async () => {
    writeFileSync(path, NODE.slice(0, 40));
    setTimeout(() => writeFileSync(path, NODE.slice(0, 80)), 200);
    setTimeout(() => writeFileSync(path, NODE), 500);
    expect((await loadNode(ipam(3), true)).podCIDRs.map((c) => c.text)).toEqual(["10.0.2.0/24"]);
  });

  it("fails a file that stays half-written with 102 and the parse error, only when the wait ends", async () => {
    writeFileSync(path, NODE.slice(0, 40));
    const { err, ms } = await loadFailure(ipam(0.5));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(err.message).toBe(`node file ${path}: is not JSON`);
    expect(err.details).toContain("still not JSON after waiting 0.5s");
    expect(err.details).toMatch(/JSON/);
    expect(ms).toBeGreaterThanOrEqual(450);
  });

  it("does not wait on a node file that is JSON but wrong (102 at once)", async () => {
    writeFileSync(path, JSON.stringify({ apiVersion: "v1", kind: "Pod" }));
    const { err, ms } = await loadFailure(ipam(3));
    expect(err.code).toBe(Code.InvalidNodeFile);
    expect(ms).toBeLessThan(1000);
  });
});
