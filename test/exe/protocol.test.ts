// The CNI process protocol as a runtime (or bridge/ptp delegating to us) drives
// the built executable: CNI_* env vars, the config on stdin, one JSON object on
// stdout, an exit status. See /work/shared/reference/cni.md sections 1-5.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Sandbox, run } from "../helpers/plugin";
import {
  SUPPORTED,
  expectCniError,
  expectJsonSuccess,
  expectNoTrace,
  expectSilentSuccess,
  runDevNull,
  tmpEntries,
} from "../helpers/protocol";

const FIXTURE = "ciliumnode-cluster-pool.json";
let sb: Sandbox;
let before: Set<string>;
beforeEach(() => {
  before = tmpEntries();
  sb = new Sandbox(FIXTURE);
});
afterEach(() => sb.cleanup());

let seq = 0;
/** A name that nothing else in the temp folder will ever carry. */
const token = (): string => `pwn-${process.pid}-${Date.now().toString(36)}-${seq++}`;

const ALL_UNSET = { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined, CNI_PATH: undefined, CNI_ARGS: undefined };

describe("VERSION", () => {
  const expectVersion = (obj: any): void => {
    expect(Object.keys(obj).sort()).toEqual(["cniVersion", "supportedVersions"]);
    expect(obj.supportedVersions).toEqual(SUPPORTED);
    expect(SUPPORTED).toContain(obj.cniVersion);
  };

  it("prints cniVersion and supportedVersions for the stdin libcni sends", async () => {
    const r = await run({ command: "VERSION", stdin: { cniVersion: "1.1.0" } });
    const obj = expectJsonSuccess(r);
    expectVersion(obj);
    expect(obj.cniVersion).toBe("1.1.0");
  });

  it("answers with an empty stdin pipe", async () => {
    expectVersion(expectJsonSuccess(await run({ command: "VERSION", stdin: "" })));
  });

  it("answers with stdin on /dev/null and no other CNI variable", async () => {
    expectVersion(expectJsonSuccess(await runDevNull({ CNI_COMMAND: "VERSION" })));
  });

  it("answers without container variables (as libcni sets dummies or nothing)", async () => {
    expectVersion(expectJsonSuccess(await run({ command: "VERSION", env: ALL_UNSET, stdin: { cniVersion: "0.4.0" } })));
    expectVersion(
      expectJsonSuccess(
        await run({
          command: "VERSION",
          env: { CNI_NETNS: "dummy", CNI_IFNAME: "dummy", CNI_PATH: "dummy" },
          stdin: { cniVersion: "1.1.0" },
        }),
      ),
    );
  });

  it("ignores a bad or unsupported stdin", async () => {
    expectVersion(expectJsonSuccess(await run({ command: "VERSION", stdin: "{not json" })));
    expectVersion(expectJsonSuccess(await run({ command: "VERSION", stdin: { cniVersion: "9.9.9" } })));
    expectVersion(expectJsonSuccess(await run({ command: "VERSION", stdin: "[1,2]" })));
  });
});

describe("CNI_COMMAND", () => {
  it.each(["FOO", "add", "Add", "", "VERSION "])("rejects %j with code 4", async (cmd) => {
    const r = await run({ command: cmd, stdin: sb.conf() });
    const e = expectCniError(r, 4, "CNI_COMMAND");
    if (cmd !== "") expect(e.msg).toContain(cmd.trim());
    expectNoTrace(sb, before);
  });
});

describe("required environment variables", () => {
  const cases: [string, string][] = [
    ["ADD", "CNI_CONTAINERID"],
    ["ADD", "CNI_NETNS"],
    ["ADD", "CNI_IFNAME"],
    ["DEL", "CNI_CONTAINERID"],
    ["DEL", "CNI_IFNAME"],
    ["CHECK", "CNI_CONTAINERID"],
    ["CHECK", "CNI_NETNS"],
    ["CHECK", "CNI_IFNAME"],
    ["GC", "CNI_PATH"],
  ];
  for (const [command, variable] of cases) {
    for (const how of ["unset", "empty"] as const) {
      it(`${command} with ${variable} ${how} -> code 4 naming it`, async () => {
        const r = await run({ command, env: { [variable]: how === "unset" ? undefined : "" }, stdin: sb.conf() });
        expectCniError(r, 4, variable);
        expectNoTrace(sb, before);
      });
    }
  }

  it("ADD with all three container variables missing names each of them", async () => {
    const r = await run({ command: "ADD", env: { CNI_CONTAINERID: undefined, CNI_NETNS: "", CNI_IFNAME: undefined }, stdin: sb.conf() });
    const e = expectCniError(r, 4);
    for (const v of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]) expect(e.msg).toContain(v);
    expectNoTrace(sb, before);
  });

  it("DEL does not need CNI_NETNS (unset or empty)", async () => {
    const add = await run({ command: "ADD", stdin: sb.conf() });
    expectJsonSuccess(add);
    expectSilentSuccess(await run({ command: "DEL", env: { CNI_NETNS: undefined }, stdin: sb.conf() }));
    expectSilentSuccess(await run({ command: "DEL", env: { CNI_NETNS: "" }, stdin: sb.conf() }));
  });

  it("ADD does not need CNI_PATH or CNI_ARGS", async () => {
    const obj = expectJsonSuccess(await run({ command: "ADD", env: { CNI_PATH: undefined, CNI_ARGS: undefined }, stdin: sb.conf() }));
    expect(obj.ips.map((i: any) => i.address)).toEqual(["10.0.2.2/24", "fd00::202/120"]);
  });

  it("STATUS needs none of them (unset, or empty as libcni passes them)", async () => {
    expectSilentSuccess(await run({ command: "STATUS", env: ALL_UNSET, stdin: sb.conf("1.1.0") }));
    expectSilentSuccess(
      await run({
        command: "STATUS",
        env: { CNI_CONTAINERID: "", CNI_NETNS: "", CNI_IFNAME: "", CNI_PATH: "", CNI_ARGS: "" },
        stdin: sb.conf("1.1.0"),
      }),
    );
  });

  it("GC needs only CNI_PATH; empty container variables are fine", async () => {
    expectSilentSuccess(
      await run({ command: "GC", env: { CNI_CONTAINERID: "", CNI_NETNS: "", CNI_IFNAME: "", CNI_ARGS: "" }, stdin: sb.conf("1.1.0") }),
    );
    expectSilentSuccess(
      await run({
        command: "GC",
        env: { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined },
        stdin: sb.conf("1.1.0", {}, { "cni.dev/valid-attachments": [] }),
      }),
    );
  });
});

describe("stdin decoding", () => {
  const bad: [string, string][] = [
    ["bad JSON", '{"cniVersion": "1.1.0", "name": '],
    ["trailing garbage", '{"cniVersion":"1.1.0","name":"podnet"} x'],
    ["empty stdin", ""],
    ["white space only", " \n\t "],
    ["a JSON array", "[]"],
    ["a JSON array of the config", "__ARRAY__"],
    ["JSON null", "null"],
    ["a JSON string", '"podnet"'],
    ["a JSON number", "42"],
  ];
  for (const command of ["ADD", "DEL"]) {
    for (const [label, text] of bad) {
      it(`${command}: ${label} -> code 6`, async () => {
        const stdin = text === "__ARRAY__" ? JSON.stringify([sb.conf()]) : text;
        expectCniError(await run({ command, stdin }), 6);
        expectNoTrace(sb, before);
      });
    }
  }

  it("CHECK, GC and STATUS: bad JSON -> code 6", async () => {
    for (const command of ["CHECK", "GC", "STATUS"]) expectCniError(await run({ command, stdin: "{" }), 6);
    expectNoTrace(sb, before);
  });
});

describe("cniVersion", () => {
  for (const v of ["1.1", "2.0.0", "1.0", "0.5.0", "v1.0.0", " 1.0.0"]) {
    it(`ADD with unsupported cniVersion ${JSON.stringify(v)} -> code 1`, async () => {
      expectCniError(await run({ command: "ADD", stdin: sb.conf(v) }), 1);
      expectNoTrace(sb, before);
    });
  }

  it("DEL with cniVersion 2.0.0 -> code 1", async () => {
    expectCniError(await run({ command: "DEL", stdin: sb.conf("2.0.0") }), 1);
  });

  it("a missing cniVersion means 0.1.0: ADD works and answers in 0.1.0 format", async () => {
    const conf = sb.conf();
    delete conf.cniVersion;
    const obj = expectJsonSuccess(await run({ command: "ADD", stdin: conf }));
    expect(obj.cniVersion).toBe("0.1.0");
    expect(obj.ips).toBeUndefined();
    expect(obj.ip4).toEqual({ ip: "10.0.2.2/24", gateway: "10.0.2.1" });
    expect(obj.ip6).toEqual({ ip: "fd00::202/120", gateway: "fd00::201" });
  });

  it("an empty cniVersion also means 0.1.0", async () => {
    const obj = expectJsonSuccess(await run({ command: "ADD", stdin: sb.conf("") }));
    expect(obj.cniVersion).toBe("0.1.0");
    expect(obj.ip4?.ip).toBe("10.0.2.2/24");
  });

  it("CHECK with cniVersion 0.3.1 -> code 1 (CHECK needs 0.4.0)", async () => {
    expectJsonSuccess(await run({ command: "ADD", stdin: sb.conf("0.3.1") }));
    const e = expectCniError(await run({ command: "CHECK", stdin: sb.conf("0.3.1") }), 1);
    expect(e.cniVersion).toBe("0.3.1");
  });

  it("CHECK with cniVersion 0.4.0 right after ADD succeeds silently", async () => {
    expectJsonSuccess(await run({ command: "ADD", stdin: sb.conf("0.4.0") }));
    expectSilentSuccess(await run({ command: "CHECK", stdin: sb.conf("0.4.0") }));
  });

  for (const command of ["GC", "STATUS"]) {
    it(`${command} with cniVersion 1.0.0 -> code 1 (needs 1.1.0)`, async () => {
      expectCniError(await run({ command, stdin: sb.conf("1.0.0") }), 1);
      expectNoTrace(sb, before);
    });
    it(`${command} with cniVersion 1.1.0 succeeds silently`, async () => {
      expectSilentSuccess(await run({ command, stdin: sb.conf("1.1.0") }));
    });
  }
});

describe("network name", () => {
  it("missing name -> code 7", async () => {
    for (const command of ["ADD", "DEL", "CHECK", "STATUS", "GC"]) {
      const conf = sb.conf();
      delete conf.name;
      expectCniError(await run({ command, stdin: conf }), 7, "name");
    }
    expectNoTrace(sb, before);
  });

  it("empty name -> code 7", async () => {
    expectCniError(await run({ command: "ADD", stdin: sb.conf("1.1.0", {}, { name: "" }) }), 7, "name");
    expectNoTrace(sb, before);
  });

  it("non-string name -> code 7", async () => {
    expectCniError(await run({ command: "ADD", stdin: sb.conf("1.1.0", {}, { name: 42 }) }), 7, "name");
    expectNoTrace(sb, before);
  });

  const hostile = (): string[] => {
    const t = token();
    return [`../${t}`, `../../${t}`, `a/${t}`, `${t}/b`, `/${t}`, "..", ".", `.${t}`, `-${t}`, `${t}\n`, `${t} x`];
  };
  for (const command of ["ADD", "DEL", "CHECK", "STATUS", "GC"]) {
    it(`${command}: names with "../", "/" or bad characters -> code 7, nothing created`, async () => {
      for (const name of hostile()) {
        const r = await run({ command, stdin: sb.conf("1.1.0", {}, { name }) });
        expectCniError(r, 7, "network name");
        expectNoTrace(sb, before, [name]);
      }
    });
  }
});

describe("container ID and interface name", () => {
  const ids = (): string[] => {
    const t = token();
    return ["../x", "a/b", "", `../../../../${t}`, `../${t}`, "..", ".", `-${t}`, `${t}/../../../..`, `${t}\n`, `${t} x`, `${t}:x`];
  };
  const ifnames = (): string[] => {
    const t = token();
    return ["a/b", "..", ".", "abcdefghijklmnop", "eth\n0", "eth0\n", "", "eth 0", "eth:0", `../${t.slice(0, 10)}`];
  };
  for (const command of ["ADD", "DEL", "CHECK"]) {
    it(`${command}: hostile CNI_CONTAINERID -> code 4, nothing created`, async () => {
      for (const id of ids()) {
        const r = await run({ command, containerID: id, stdin: sb.conf() });
        expectCniError(r, 4, "CNI_CONTAINERID");
        expectNoTrace(sb, before, [id]);
      }
    });
    it(`${command}: hostile CNI_IFNAME -> code 4, nothing created`, async () => {
      for (const ifname of ifnames()) {
        const r = await run({ command, ifname, stdin: sb.conf() });
        expectCniError(r, 4, "CNI_IFNAME");
        expectNoTrace(sb, before, [ifname]);
      }
    });
  }

  it("a 15-character interface name is accepted", async () => {
    const obj = expectJsonSuccess(await run({ command: "ADD", ifname: "abcdefghijklmno", stdin: sb.conf() }));
    expect(obj.ips[0].address).toBe("10.0.2.2/24");
  });

  it("hostile IDs are rejected even after the store exists", async () => {
    expectJsonSuccess(await run({ command: "ADD", stdin: sb.conf() }));
    const t = token();
    for (const id of [`../${t}`, `../../${t}`, `../../../../${t}`]) {
      expectCniError(await run({ command: "ADD", containerID: id, stdin: sb.conf() }), 4, "CNI_CONTAINERID");
      expectCniError(await run({ command: "DEL", containerID: id, stdin: sb.conf() }), 4, "CNI_CONTAINERID");
    }
    const gained = [...tmpEntries()].filter((e) => !before.has(e) && e.includes(t));
    expect(gained).toEqual([]);
  });
});

describe("error object", () => {
  it("carries the config's cniVersion and goes to stdout only", async () => {
    const r = await run({ command: "ADD", stdin: sb.conf("1.0.0", { gateway: "no" }) });
    const e = expectCniError(r, 7, "gateway");
    expect(e.cniVersion).toBe("1.0.0");
    expect(r.stderr).not.toContain('"code"');
  });

  it("has exactly the keys cniVersion, code, msg, details", async () => {
    const e = expectCniError(await run({ command: "ADD", containerID: "a/b", stdin: sb.conf() }), 4);
    expect(Object.keys(e).sort()).toEqual(["cniVersion", "code", "details", "msg"]);
  });

  it("a successful ADD writes only the result to stdout (logs go to stderr)", async () => {
    const r = await run({ command: "ADD", stdin: sb.conf() });
    const obj = expectJsonSuccess(r);
    expect(Object.keys(obj).sort()).toEqual(["cniVersion", "ips"]);
    // Whatever the plugin logs stays out of stdout.
    for (const line of r.stderr.split("\n").filter((l) => l.trim() !== "")) expect(r.stdout).not.toContain(line);
  });

  it("a domain error (node file missing) is still one JSON object on stdout", async () => {
    const other = new Sandbox();
    try {
      const r = await run({ command: "ADD", stdin: other.conf() });
      expectCniError(r, 11, "node file");
    } finally {
      other.cleanup();
    }
  });
});

describe("unknown keys are ignored", () => {
  it("at the top level, in ipam, runtimeConfig and args, and in CNI_ARGS", async () => {
    const conf = sb.conf(
      "1.1.0",
      { someFutureKey: { nested: [1, 2, 3] }, subnet: "ignored-by-us", "cni.dev/x": true },
      {
        ipMasq: true,
        hairpinMode: false,
        mtu: 1450,
        capabilities: { portMappings: true, bandwidth: true, ips: false },
        runtimeConfig: {
          portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
          bandwidth: { ingressRate: 1000 },
          somethingNew: "x",
        },
        args: { cni: { labels: [{ key: "app", value: "web" }], unknownThing: 1 }, k8s: { whatever: true } },
        "cni.dev/some-runtime-key": { a: 1 },
        futureTopLevel: [null, {}],
      },
    );
    const r = await run({
      command: "ADD",
      args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=ctr1;K8S_POD_UID=0b6c;SOMETHING_ELSE=1",
      stdin: conf,
    });
    const obj = expectJsonSuccess(r);
    expect(obj).toEqual({
      cniVersion: "1.1.0",
      ips: [
        { address: "10.0.2.2/24", gateway: "10.0.2.1" },
        { address: "fd00::202/120", gateway: "fd00::201" },
      ],
    });
    expectSilentSuccess(await run({ command: "CHECK", stdin: { ...conf, prevResult: obj } }));
    expectSilentSuccess(await run({ command: "DEL", stdin: conf }));
  });

  it("CNI_ARGS with unknown keys and without IgnoreUnknown", async () => {
    const r = await run({ command: "ADD", args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;FOO=bar", stdin: sb.conf() });
    expect(expectJsonSuccess(r).ips[0].address).toBe("10.0.2.2/24");
  });

  it("OpenTelemetry and CNI_NETNS_OVERRIDE variables are ignored", async () => {
    const r = await run({
      command: "ADD",
      env: { TRACEPARENT: "00-abc-def-01", TRACESTATE: "x=y", BAGGAGE: "k=v", CNI_NETNS_OVERRIDE: "1" },
      stdin: sb.conf(),
    });
    expect(expectJsonSuccess(r).ips[0].address).toBe("10.0.2.2/24");
  });
});

describe("bad ipam values -> code 7 naming the key", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["nodeFile relative", { nodeFile: "node.json" }, "nodeFile"],
    ["nodeFile ./relative", { nodeFile: "./test/node.json" }, "nodeFile"],
    ["nodeFile number", { nodeFile: 7 }, "nodeFile"],
    ["dataDir 42", { dataDir: 42 }, "dataDir"],
    ["dataDir relative", { dataDir: "data" }, "dataDir"],
    ["waitForPodCIDRs -1", { waitForPodCIDRs: -1 }, "waitForPodCIDRs"],
    ["waitForPodCIDRs string", { waitForPodCIDRs: "5" }, "waitForPodCIDRs"],
    ['gateway "no"', { gateway: "no" }, "gateway"],
    ["gateway 0", { gateway: 0 }, "gateway"],
    ['routes [{"dst":"nope"}]', { routes: [{ dst: "nope" }] }, "routes"],
    ["routes without dst", { routes: [{ gw: "10.0.2.1" }] }, "routes"],
    ["routes bad gw", { routes: [{ dst: "0.0.0.0/0", gw: "nope" }] }, "routes"],
    ["routes not a list", { routes: { dst: "0.0.0.0/0" } }, "routes"],
    ['dns {"nameservers":"x"}', { dns: { nameservers: "x" } }, "nameservers"],
    ["dns not an object", { dns: "10.96.0.10" }, "dns"],
  ];
  for (const [label, ipam, key] of cases) {
    it(`${label}`, async () => {
      const r = await run({ command: "ADD", stdin: sb.conf("1.0.0", ipam) });
      const e = expectCniError(r, 7, key);
      expect(e.cniVersion).toBe("1.0.0");
      expectNoTrace(sb, before, ["node.json", "data", "test"]);
    });
  }

  it("a missing ipam object -> code 7", async () => {
    const conf = sb.conf();
    delete conf.ipam;
    expectCniError(await run({ command: "ADD", stdin: conf }), 7, "ipam");
    expectNoTrace(sb, before);
  });

  it("DEL rejects a bad ipam value too", async () => {
    expectCniError(await run({ command: "DEL", stdin: sb.conf("1.1.0", { dataDir: 42 }) }), 7, "dataDir");
  });
});
