import { describe, expect, it } from "vitest";
import { type Handlers, type Io, type Request, dispatch } from "../../src/cni/dispatch.js";
import type { IpamResult } from "../../src/cni/result.js";
import { SUPPORTED_VERSIONS } from "../../src/cni/version.js";
import { CniError, Code } from "../../src/errors.js";

const ENV = {
  CNI_CONTAINERID: "ctr1",
  CNI_NETNS: "/var/run/netns/test",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};

const RESULT: IpamResult = { ips: [{ family: 4, address: "10.0.2.5/24", gateway: "10.0.2.1" }], routes: [{ dst: "0.0.0.0/0" }] };

function conf(cniVersion: unknown = "1.1.0", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion, name: "podnet", type: "bridge", ipam: { type: "podcidr-ipam", dataDir: "/tmp/none" }, ...extra });
}

/** What a fake handler does: what it resolves to is ignored but for ADD, whose result is printed. */
type Behaviour = (req: Request) => Promise<unknown>;

/** Run dispatch with a plain env object and fake handlers; collect what it wrote. */
async function drive(
  env: Record<string, string | undefined>,
  stdin: string | Error,
  behave: Partial<Record<keyof Handlers, Behaviour>> = {},
) {
  const out: string[] = [];
  const err: string[] = [];
  const calls: { command: string; req: Request }[] = [];
  let stdinReads = 0;
  const io: Io = {
    env,
    readStdin: async () => {
      stdinReads++;
      if (stdin instanceof Error) throw stdin;
      return Buffer.from(stdin, "utf8");
    },
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
  };
  const fake =
    (command: keyof Handlers): Behaviour =>
    async (req) => {
      calls.push({ command, req });
      const b = behave[command];
      // ADD always answers with a result; an empty one is enough here.
      return b ? b(req) : command === "ADD" ? { ips: [], routes: [] } : undefined;
    };
  const handlers = {
    ADD: fake("ADD"),
    DEL: fake("DEL"),
    CHECK: fake("CHECK"),
    GC: fake("GC"),
    STATUS: fake("STATUS"),
  } as unknown as Handlers;
  const code = await dispatch(io, handlers);
  const stdout = out.join("");
  return { code, stdout, json: stdout ? JSON.parse(stdout) : undefined, stderr: err.join(""), calls, stdinReads };
}

describe("dispatch: VERSION", () => {
  it("reports the supported versions without calling a handler", async () => {
    const r = await drive({ CNI_COMMAND: "VERSION" }, "");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${JSON.stringify({ cniVersion: "1.1.0", supportedVersions: SUPPORTED_VERSIONS })}\n`);
    expect(r.calls).toEqual([]);
  });

  it.each([
    { name: "a supported version asked for", stdin: '{"cniVersion":"0.4.0"}', expected: "0.4.0" },
    { name: "an unknown version asked for", stdin: '{"cniVersion":"9.9.9"}', expected: "1.1.0" },
    { name: "stdin that is not JSON", stdin: "{nope", expected: "1.1.0" },
    { name: "stdin that cannot be read", stdin: new Error("EIO"), expected: "1.1.0" },
    { name: "a null cniVersion", stdin: '{"cniVersion":null}', expected: "1.1.0" },
    { name: "a numeric cniVersion", stdin: '{"cniVersion":1}', expected: "1.1.0" },
    { name: "an object cniVersion", stdin: '{"cniVersion":{}}', expected: "1.1.0" },
  ])("answers $name with cniVersion $expected", async ({ stdin, expected }) => {
    const r = await drive({ CNI_COMMAND: "VERSION" }, stdin);
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: expected, supportedVersions: [...SUPPORTED_VERSIONS] });
  });
});

describe("dispatch: routing", () => {
  it.each([
    { command: "ADD" as const, env: ENV },
    { command: "DEL" as const, env: { CNI_CONTAINERID: "ctr1", CNI_IFNAME: "eth0" } },
    { command: "CHECK" as const, env: ENV },
    { command: "GC" as const, env: { CNI_PATH: "/opt/cni/bin" } },
    { command: "STATUS" as const, env: {} },
  ])("calls the $command handler once with the parsed request", async ({ command, env }) => {
    const r = await drive({ ...env, CNI_COMMAND: command }, conf("1.1.0"));
    expect(r.code).toBe(0);
    expect(r.calls.map((c) => c.command)).toEqual([command]);
    const req = r.calls[0]!.req;
    expect(req.cmd.command).toBe(command);
    expect(req.version).toBe("1.1.0");
    expect(req.conf.name).toBe("podnet");
    expect(req.conf.ipam.dataDir).toBe("/tmp/none");
  });

  it.each(["0.3.1", "0.4.0", "1.0.0", "1.1.0"].map((v) => ({ v })))(
    "[$v] prints the ADD result shaped for the config's version",
    async ({ v }) => {
      const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, conf(v), { ADD: async () => RESULT });
      expect(r.code).toBe(0);
      expect(r.stdout.endsWith("}\n")).toBe(true);
      expect(r.stdout.split("\n")).toHaveLength(2);
      expect(r.json.cniVersion).toBe(v);
      expect(r.json.ips[0].address).toBe("10.0.2.5/24");
    },
  );

  it('treats a config with "cniVersion": null as 0.1.0, as skel does', async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, JSON.stringify({ cniVersion: null, name: "podnet", ipam: {} }), {
      ADD: async () => RESULT,
    });
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: "0.1.0", ip4: { ip: "10.0.2.5/24", gateway: "10.0.2.1", routes: [{ dst: "0.0.0.0/0" }] } });
  });

  it("treats a config without cniVersion as 0.1.0", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, JSON.stringify({ name: "podnet", ipam: {} }), { ADD: async () => RESULT });
    expect(r.json).toEqual({ cniVersion: "0.1.0", ip4: { ip: "10.0.2.5/24", gateway: "10.0.2.1", routes: [{ dst: "0.0.0.0/0" }] } });
  });

  it("prints nothing for a DEL that succeeds, even if its handler returns a value", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "DEL" }, conf(), { DEL: async () => RESULT });
    expect(r).toMatchObject({ code: 0, stdout: "" });
  });

  it("passes a logger that writes one prefixed line to stderr, never stdout", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "DEL" }, conf(), {
      DEL: async (req) => {
        req.log("released 10.0.2.5");
      },
    });
    expect(r.stderr).toBe("podcidr-ipam DEL ctr1: released 10.0.2.5\n");
    expect(r.stdout).toBe("");
  });

  it("reads the requested addresses, IP= in CNI_ARGS included, and CNI_ARGS into the request", async () => {
    const r = await drive(
      { ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME=web-0;IP=fd00::250" },
      conf("1.1.0", { runtimeConfig: { ips: ["10.0.2.50/24"] } }),
      {
        ADD: async () => RESULT,
      },
    );
    const req = r.calls[0]!.req;
    expect(req.conf.requested).toEqual([
      { family: 6, value: 0xfd000000000000000000000000000250n, text: "fd00::250" },
      { family: 4, value: 0x0a000232n, text: "10.0.2.50/24" },
    ]);
    expect(req.cmd.args.get("K8S_POD_NAME")).toBe("web-0");
  });

  it("refuses a mistyped IP key in CNI_ARGS with 4 before calling the handler", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD", CNI_ARGS: "IgnoreUnknown=1;ip=10.0.2.50" }, conf("1.1.0"));
    expect(r.json).toMatchObject({
      code: Code.InvalidEnvironmentVariables,
      msg: 'CNI_ARGS key "ip" is not IP: write IP=<address>, in upper case with no spaces',
    });
    expect(r.calls).toEqual([]);
  });
});

describe("dispatch: errors", () => {
  it.each([
    // An unknown command is refused before stdin is read (as skel does); a bad environment after, to echo the version.
    { name: "an unknown command", env: { ...ENV, CNI_COMMAND: "UPDATE" }, msg: "unknown CNI_COMMAND: UPDATE", version: "1.1.0", reads: 0 },
    { name: "no CNI_COMMAND", env: { ...ENV }, msg: "unknown CNI_COMMAND: ", version: "1.1.0", reads: 0 },
    {
      name: "a missing CNI_NETNS on ADD",
      env: { ...ENV, CNI_NETNS: undefined, CNI_COMMAND: "ADD" },
      msg: "required env variables [CNI_NETNS] missing",
      version: "0.4.0",
      reads: 1,
    },
  ])("answers $name with code 4 and calls no handler", async ({ env, msg, version, reads }) => {
    const r = await drive(env, conf("0.4.0"));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: version, code: Code.InvalidEnvironmentVariables, msg });
    expect(typeof r.json.details).toBe("string");
    expect(r.calls).toEqual([]);
    expect(r.stdinReads).toBe(reads);
  });

  it("writes a handler's CniError as one JSON line in the config's cniVersion", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, conf("0.4.0"), {
      ADD: async () => {
        throw new CniError(Code.PoolExhausted, "no free address in 10.0.2.0/24", "254 of 254 in use");
      },
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `${JSON.stringify({ cniVersion: "0.4.0", code: 100, msg: "no free address in 10.0.2.0/24", details: "254 of 254 in use" })}\n`,
    );
    expect(r.stderr).toBe("");
  });

  it.each([
    { name: "an Error", thrown: new Error("boom"), msg: "internal error: boom" },
    { name: "a TypeError", thrown: new TypeError("x is undefined"), msg: "internal error: x is undefined" },
    { name: "a string", thrown: "oops", msg: "internal error: oops" },
  ])("turns $name thrown by a handler into code 999 and logs it to stderr", async ({ thrown, msg }) => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, conf("1.0.0"), {
      ADD: async () => {
        throw thrown;
      },
    });
    expect(r.code).toBe(1);
    expect(r.json).toEqual({
      cniVersion: "1.0.0",
      code: Code.Internal,
      msg,
      details: "this is a bug in podcidr-ipam; the store was left as it was",
    });
    expect(r.stderr).toContain(thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : "oops");
  });

  it.each([
    { name: "an empty stdin", stdin: "", code: Code.DecodingFailure, msg: "no network config on stdin", version: "1.1.0" },
    {
      name: "stdin that is not JSON",
      stdin: "{",
      code: Code.DecodingFailure,
      msg: "network config on stdin is not valid JSON",
      version: "1.1.0",
    },
    {
      name: "a JSON array",
      stdin: "[]",
      code: Code.DecodingFailure,
      msg: "network config on stdin must be a JSON object",
      version: "1.1.0",
    },
    {
      name: "an unknown cniVersion",
      stdin: conf("2.0.0"),
      code: Code.IncompatibleCNIVersion,
      msg: "incompatible CNI versions",
      version: "1.1.0",
    },
    {
      name: "a numeric cniVersion",
      stdin: conf(1),
      code: Code.DecodingFailure,
      msg: 'cniVersion must be a version string such as "1.1.0", got 1',
      version: "1.1.0",
    },
    {
      name: "an object cniVersion",
      stdin: conf({}),
      code: Code.DecodingFailure,
      msg: 'cniVersion must be a version string such as "1.1.0", got {}',
      version: "1.1.0",
    },
    {
      name: "stdin over 1 MiB",
      stdin: conf("1.1.0", { padding: "p".repeat(1 << 20) }),
      code: Code.DecodingFailure,
      msg: "network config on stdin is more than 1048576 bytes",
      version: "1.1.0",
    },
    {
      name: "a missing network name",
      stdin: JSON.stringify({ cniVersion: "0.3.1", ipam: {} }),
      code: Code.InvalidNetworkConfig,
      msg: "missing network name",
      version: "0.3.1",
    },
    {
      name: "a bad ipam key",
      stdin: conf("1.0.0", { ipam: { gateway: "yes" } }),
      code: Code.InvalidNetworkConfig,
      msg: 'ipam.gateway must be true or false, got "yes"',
      version: "1.0.0",
    },
  ])("reports $name before calling the handler", async ({ stdin, code, msg, version }) => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, stdin);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: version, code, msg });
    expect(r.calls).toEqual([]);
  });

  it("refuses CHECK for a 0.3.1 config with code 1 in that version", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "CHECK" }, conf("0.3.1"));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ cniVersion: "0.3.1", code: Code.IncompatibleCNIVersion, msg: "config version does not allow CHECK" });
    expect(r.calls).toEqual([]);
  });

  it("answers a stdin that cannot be read with code 5", async () => {
    const r = await drive({ ...ENV, CNI_COMMAND: "ADD" }, new Error("EIO: i/o error"));
    expect(r.code).toBe(1);
    expect(r.json).toEqual({
      cniVersion: "1.1.0",
      code: Code.IOFailure,
      msg: "cannot read the network config from stdin",
      details: "EIO: i/o error",
    });
  });
});
