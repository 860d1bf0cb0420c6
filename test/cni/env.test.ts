import { describe, expect, it } from "vitest";
import { failure } from "../helpers/errors";
import { Code } from "../../src/errors.js";
import { type Command, parseCniArgs, parseCommand, parseEnv } from "../../src/cni/env.js";

const FULL = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "3f8a9c0d1e2b",
  CNI_NETNS: "/var/run/netns/cni-1234",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
  CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
};

describe("parseCommand", () => {
  it.each(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"])("accepts %s", (cmd) => {
    expect(parseCommand(cmd)).toBe(cmd);
  });

  it.each([
    { name: "an unknown verb", raw: "UPDATE", shown: "UPDATE" },
    { name: "lower case", raw: "add", shown: "add" },
    { name: "an empty value", raw: "", shown: "" },
    { name: "no value", raw: undefined, shown: "" },
  ])("rejects $name with code 4", ({ raw, shown }) => {
    const err = failure(() => parseCommand(raw));
    expect(err.code).toBe(Code.InvalidEnvironmentVariables);
    expect(err.message).toBe(`unknown CNI_COMMAND: ${shown}`);
    expect(err.details).toBe("CNI_COMMAND must be one of ADD, DEL, CHECK, GC, STATUS, VERSION");
  });
});

describe("parseEnv", () => {
  it("reads every variable of an ADD", () => {
    const cmd = parseEnv("ADD", FULL);
    expect(cmd).toMatchObject({
      command: "ADD",
      containerID: "3f8a9c0d1e2b",
      netns: "/var/run/netns/cni-1234",
      ifname: "eth0",
      path: "/opt/cni/bin",
    });
    expect([...cmd.args]).toEqual([
      ["K8S_POD_NAMESPACE", "default"],
      ["K8S_POD_NAME", "web-0"],
    ]);
  });

  it("lets DEL go without CNI_NETNS (the netns may be gone)", () => {
    const { CNI_NETNS: _gone, ...env } = FULL;
    expect(parseEnv("DEL", env)).toMatchObject({ command: "DEL", containerID: "3f8a9c0d1e2b", netns: "", ifname: "eth0" });
  });

  it("ignores per-container variables for GC and STATUS", () => {
    expect(parseEnv("GC", { CNI_PATH: "/opt/cni/bin", CNI_CONTAINERID: "bad id!" })).toMatchObject({
      containerID: "",
      ifname: "",
      netns: "",
      path: "/opt/cni/bin",
    });
    expect(parseEnv("GC", { CNI_PATH: "/opt/cni/bin", CNI_ARGS: "junk" }).args.size).toBe(0);
    expect(parseEnv("STATUS", {})).toMatchObject({ command: "STATUS", containerID: "", path: "" });
  });

  it.each([
    { name: "ADD without anything", command: "ADD" as Command, env: {}, missing: "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME" },
    { name: "ADD without CNI_NETNS", command: "ADD" as Command, env: { ...FULL, CNI_NETNS: undefined }, missing: "CNI_NETNS" },
    { name: "CHECK with an empty CNI_IFNAME", command: "CHECK" as Command, env: { ...FULL, CNI_IFNAME: "" }, missing: "CNI_IFNAME" },
    { name: "DEL without CNI_CONTAINERID", command: "DEL" as Command, env: { CNI_IFNAME: "eth0" }, missing: "CNI_CONTAINERID" },
    { name: "GC without CNI_PATH", command: "GC" as Command, env: {}, missing: "CNI_PATH" },
  ])("reports what is missing for $name", ({ command, env, missing }) => {
    const err = failure(() => parseEnv(command, env));
    expect(err.code).toBe(Code.InvalidEnvironmentVariables);
    expect(err.message).toBe(`required env variables [${missing}] missing`);
  });

  it.each([
    { name: "a slash", id: "../../etc" },
    { name: "a leading dash", id: "-abc" },
    { name: "white space", id: "abc def" },
    { name: "an @ (it separates the attachment file name)", id: "abc@def" },
    { name: "201 characters", id: "a".repeat(201) },
  ])("rejects a container ID with $name", ({ id }) => {
    const err = failure(() => parseEnv("ADD", { ...FULL, CNI_CONTAINERID: id }));
    expect(err.code).toBe(Code.InvalidEnvironmentVariables);
    expect(err.message).toMatch(/^CNI_CONTAINERID ".*" is invalid$/);
  });

  it("accepts a 200-character container ID with dots, dashes and underscores", () => {
    const id = `a.b-c_d${"0".repeat(193)}`;
    expect(parseEnv("ADD", { ...FULL, CNI_CONTAINERID: id }).containerID).toBe(id);
  });

  it.each([
    { name: "16 characters", ifname: "a".repeat(16), why: "it is longer than 15 bytes" },
    { name: "6 characters but 18 bytes of UTF-8", ifname: "网络接口名字", why: "it is longer than 15 bytes" },
    { name: "a dot", ifname: ".", why: "it must not be . or .." },
    { name: "two dots", ifname: "..", why: "it must not be . or .." },
    { name: "a slash", ifname: "eth/0", why: "it must not contain /, :, white space or control characters" },
    { name: "a colon", ifname: "eth0:1", why: "it must not contain /, :, white space or control characters" },
    { name: "a space", ifname: "eth 0", why: "it must not contain /, :, white space or control characters" },
    { name: "a tab", ifname: "eth\t0", why: "it must not contain /, :, white space or control characters" },
  ])("rejects an interface name with $name", ({ ifname, why }) => {
    const err = failure(() => parseEnv("ADD", { ...FULL, CNI_IFNAME: ifname }));
    expect(err.code).toBe(Code.InvalidEnvironmentVariables);
    expect(err.message).toBe(`CNI_IFNAME ${JSON.stringify(ifname)} is invalid`);
    expect(err.details).toBe(why);
  });

  it("accepts a 15-character interface name", () => {
    expect(parseEnv("ADD", { ...FULL, CNI_IFNAME: "net1-abcdefghij" }).ifname).toBe("net1-abcdefghij");
  });
});

describe("parseCniArgs", () => {
  it.each([
    { name: "an empty string", raw: "", expected: [] },
    { name: "one pair", raw: "IP=10.0.2.50", expected: [["IP", "10.0.2.50"]] },
    {
      name: "stray separators",
      raw: ";A=1;;B=2;",
      expected: [
        ["A", "1"],
        ["B", "2"],
      ],
    },
    { name: "an empty value", raw: "IgnoreUnknown=", expected: [["IgnoreUnknown", ""]] },
    { name: "an = inside the value", raw: "A=b=c", expected: [["A", "b=c"]] },
    { name: "a repeated key (last wins)", raw: "A=1;A=2", expected: [["A", "2"]] },
  ])("parses $name", ({ raw, expected }) => {
    expect([...parseCniArgs(raw)]).toEqual(expected);
  });

  it.each([
    { name: "a bare word", raw: "A=1;junk", pair: "junk" },
    { name: "an empty key", raw: "=1", pair: "=1" },
  ])("rejects $name with code 4", ({ raw, pair }) => {
    const err = failure(() => parseCniArgs(raw));
    expect(err.code).toBe(Code.InvalidEnvironmentVariables);
    expect(err.message).toBe(`CNI_ARGS: ${JSON.stringify(pair)} is not KEY=VALUE`);
  });
});
