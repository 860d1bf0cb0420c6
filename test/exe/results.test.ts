// ADD's result in every CNI version we speak (cni.md section 3), and DEL's
// silence, as the built executable prints them.
import { rmSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sandbox, run } from "../helpers/plugin";
import { SUPPORTED, expectJsonSuccess, expectSilentSuccess } from "../helpers/protocol";

const DUAL = "ciliumnode-cluster-pool.json"; // 10.0.2.0/24 + fd00::200/120
const V4_ONLY = "ciliumnode-ipv4-only.json"; // 10.0.3.0/24

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox(DUAL);
});
afterEach(() => sb.cleanup());

const ROUTES = [{ dst: "0.0.0.0/0" }, { dst: "::/0" }];
const DNS = {
  nameservers: ["10.96.0.10"],
  domain: "cluster.local",
  search: ["default.svc.cluster.local", "svc.cluster.local"],
  options: ["ndots:5"],
};

const is1x = (v: string): boolean => v.startsWith("1.");
const is03 = (v: string): boolean => ["0.3.0", "0.3.1", "0.4.0"].includes(v);

/** Go emits "dns": {} for 0.x results without DNS; an absent dns is as good. */
function withoutEmptyDns(obj: any): any {
  const out = { ...obj };
  if (out.dns !== undefined && typeof out.dns === "object" && out.dns !== null && Object.keys(out.dns).length === 0) delete out.dns;
  return out;
}

async function add(conf: Record<string, unknown>, containerID = "ctr1"): Promise<any> {
  return expectJsonSuccess(await run({ command: "ADD", containerID, stdin: conf }));
}

describe("result format per cniVersion (dual stack, routes configured)", () => {
  for (const v of SUPPORTED) {
    it(`${v}`, async () => {
      const obj = await add(sb.conf(v, { routes: ROUTES }));
      expect(obj.cniVersion).toBe(v);
      expect(obj.interfaces).toBeUndefined();
      if (is1x(v)) {
        expect(obj).toEqual({
          cniVersion: v,
          ips: [
            { address: "10.0.2.2/24", gateway: "10.0.2.1" },
            { address: "fd00::202/120", gateway: "fd00::201" },
          ],
          routes: ROUTES,
        });
        for (const ip of obj.ips) {
          expect(ip).not.toHaveProperty("version");
          expect(ip).not.toHaveProperty("interface");
        }
      } else if (is03(v)) {
        expect(withoutEmptyDns(obj)).toEqual({
          cniVersion: v,
          ips: [
            { version: "4", address: "10.0.2.2/24", gateway: "10.0.2.1" },
            { version: "6", address: "fd00::202/120", gateway: "fd00::201" },
          ],
          routes: ROUTES,
        });
        for (const ip of obj.ips) expect(ip).not.toHaveProperty("interface");
      } else {
        expect(withoutEmptyDns(obj)).toEqual({
          cniVersion: v,
          ip4: { ip: "10.0.2.2/24", gateway: "10.0.2.1", routes: [{ dst: "0.0.0.0/0" }] },
          ip6: { ip: "fd00::202/120", gateway: "fd00::201", routes: [{ dst: "::/0" }] },
        });
        expect(obj.ips).toBeUndefined();
        expect(obj.routes).toBeUndefined();
      }
    });
  }

  for (const v of SUPPORTED) {
    it(`${v} without routes configured`, async () => {
      const obj = withoutEmptyDns(await add(sb.conf(v)));
      expect(obj.cniVersion).toBe(v);
      if (is1x(v) || is03(v)) {
        expect(obj.ips.map((i: any) => i.address)).toEqual(["10.0.2.2/24", "fd00::202/120"]);
        expect(obj.routes === undefined || (Array.isArray(obj.routes) && obj.routes.length === 0)).toBe(true);
      } else {
        expect(obj.ip4).toEqual({ ip: "10.0.2.2/24", gateway: "10.0.2.1" });
        expect(obj.ip6).toEqual({ ip: "fd00::202/120", gateway: "fd00::201" });
      }
    });
  }

  it("a second container gets the next addresses", async () => {
    await add(sb.conf("1.1.0"), "ctr1");
    const obj = await add(sb.conf("1.1.0"), "ctr2");
    expect(obj.ips.map((i: any) => i.address)).toEqual(["10.0.2.3/24", "fd00::203/120"]);
  });
});

describe("routes", () => {
  const routes = [
    { dst: "192.168.0.0/16", gw: "10.0.2.254" },
    { dst: "0.0.0.0/0" },
    { dst: "::/0", gw: "fd00::2ff" },
    { dst: "fd00:1::/64" },
  ];

  for (const v of ["1.0.0", "1.1.0", "0.4.0", "0.3.1"]) {
    it(`are passed through in order (${v})`, async () => {
      const obj = await add(sb.conf(v, { routes }));
      expect(obj.routes).toEqual(routes);
    });
  }

  it("are split by family into ip4/ip6 for 0.2.0", async () => {
    const obj = await add(sb.conf("0.2.0", { routes }));
    expect(obj.ip4.routes).toEqual([routes[0], routes[1]]);
    expect(obj.ip6.routes).toEqual([routes[2], routes[3]]);
  });

  it("1.1.0 route fields (mtu, advmss, priority, table, scope) are passed through", async () => {
    const rich = [{ dst: "0.0.0.0/0", gw: "10.0.2.1", mtu: 1400, advmss: 1360, priority: 100, table: 10, scope: 0 }, { dst: "::/0" }];
    const obj = await add(sb.conf("1.1.0", { routes: rich }));
    expect(obj.routes).toEqual(rich);
  });

  describe("on an IPv4-only node", () => {
    let v4: Sandbox;
    beforeEach(() => {
      v4 = new Sandbox(V4_ONLY);
    });
    afterEach(() => v4.cleanup());

    for (const v of SUPPORTED) {
      it(`a ::/0 route is dropped (${v})`, async () => {
        const obj = withoutEmptyDns(await add(v4.conf(v, { routes: ROUTES })));
        expect(obj.cniVersion).toBe(v);
        if (is1x(v)) {
          expect(obj).toEqual({ cniVersion: v, ips: [{ address: "10.0.3.2/24", gateway: "10.0.3.1" }], routes: [{ dst: "0.0.0.0/0" }] });
        } else if (is03(v)) {
          expect(obj).toEqual({
            cniVersion: v,
            ips: [{ version: "4", address: "10.0.3.2/24", gateway: "10.0.3.1" }],
            routes: [{ dst: "0.0.0.0/0" }],
          });
        } else {
          expect(obj).toEqual({ cniVersion: v, ip4: { ip: "10.0.3.2/24", gateway: "10.0.3.1", routes: [{ dst: "0.0.0.0/0" }] } });
        }
      });
    }
  });
});

describe("dns", () => {
  for (const v of ["1.1.0", "1.0.0", "0.4.0", "0.3.0", "0.2.0", "0.1.0"]) {
    it(`is passed through (${v})`, async () => {
      const obj = await add(sb.conf(v, { dns: DNS }));
      expect(obj.dns).toEqual(DNS);
    });
  }

  it("is absent from a 1.x result when not configured", async () => {
    const obj = await add(sb.conf("1.1.0"));
    expect(obj).not.toHaveProperty("dns");
  });

  it("a partial dns object is passed through as given", async () => {
    const obj = await add(sb.conf("1.1.0", { dns: { nameservers: ["10.96.0.10", "fd00::a"] } }));
    expect(obj.dns).toEqual({ nameservers: ["10.96.0.10", "fd00::a"] });
  });
});

describe('"gateway": false', () => {
  for (const v of SUPPORTED) {
    it(`omits the gateway and hands out the first usable address (${v})`, async () => {
      const obj = withoutEmptyDns(await add(sb.conf(v, { gateway: false })));
      expect(obj.cniVersion).toBe(v);
      if (is1x(v)) {
        expect(obj).toEqual({ cniVersion: v, ips: [{ address: "10.0.2.1/24" }, { address: "fd00::201/120" }] });
      } else if (is03(v)) {
        expect(obj).toEqual({
          cniVersion: v,
          ips: [
            { version: "4", address: "10.0.2.1/24" },
            { version: "6", address: "fd00::201/120" },
          ],
        });
      } else {
        expect(obj).toEqual({ cniVersion: v, ip4: { ip: "10.0.2.1/24" }, ip6: { ip: "fd00::201/120" } });
      }
    });
  }

  it('"gateway": true (the default, explicit) keeps .1 for the gateway', async () => {
    const obj = await add(sb.conf("1.1.0", { gateway: true }));
    expect(obj.ips).toEqual([
      { address: "10.0.2.2/24", gateway: "10.0.2.1" },
      { address: "fd00::202/120", gateway: "fd00::201" },
    ]);
  });
});

describe("DEL prints nothing", () => {
  for (const v of SUPPORTED) {
    it(`after ADD (${v})`, async () => {
      await add(sb.conf(v));
      expectSilentSuccess(await run({ command: "DEL", stdin: sb.conf(v) }));
    });
  }

  it("for an unknown container, when nothing was ever stored, and when repeated", async () => {
    expectSilentSuccess(await run({ command: "DEL", containerID: "never-added", stdin: sb.conf() }));
    await add(sb.conf());
    expectSilentSuccess(await run({ command: "DEL", containerID: "never-added", stdin: sb.conf() }));
    expectSilentSuccess(await run({ command: "DEL", stdin: sb.conf() }));
    expectSilentSuccess(await run({ command: "DEL", stdin: sb.conf() }));
  });

  it("with a prevResult (as libcni sends it from its cache)", async () => {
    const conf = sb.conf("1.1.0");
    const first = await add(conf, "a");
    expectSilentSuccess(await run({ command: "DEL", containerID: "a", stdin: { ...conf, prevResult: first } }));
  });

  it("when the node file is gone", async () => {
    await add(sb.conf());
    rmSync(sb.nodeFile);
    expectSilentSuccess(await run({ command: "DEL", stdin: sb.conf() }));
  });
});
