import { describe, expect, it } from "vitest";
import { failure } from "../helpers/errors";
import { Code } from "../../src/errors.js";
import { CURRENT_VERSION, SUPPORTED_VERSIONS, checkVersion, compareVersions, isSupported } from "../../src/cni/version.js";

describe("version", () => {
  it("speaks every released spec version from 0.1.0 to 1.1.0, newest last", () => {
    expect(SUPPORTED_VERSIONS).toEqual(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    expect(CURRENT_VERSION).toBe("1.1.0");
  });

  it.each([
    { name: "a supported version", v: "0.3.1", expected: true },
    { name: "an unreleased version", v: "1.2.0", expected: false },
    { name: "a version with a v", v: "v1.0.0", expected: false },
    { name: "a number", v: 1, expected: false },
    { name: "undefined", v: undefined, expected: false },
  ])("isSupported is $expected for $name", ({ v, expected }) => {
    expect(isSupported(v)).toBe(expected);
  });

  it.each([
    { a: "0.1.0", b: "1.1.0", sign: -1 },
    { a: "0.3.1", b: "0.3.0", sign: 1 },
    { a: "1.0.0", b: "1.0.0", sign: 0 },
  ] as const)("compares $a with $b as $sign", ({ a, b, sign }) => {
    expect(Math.sign(compareVersions(a, b))).toBe(sign);
  });
});

describe("checkVersion", () => {
  it.each([
    { name: "ADD at 1.1.0", command: "ADD", raw: "1.1.0", expected: "1.1.0" },
    { name: "ADD at 0.2.0", command: "ADD", raw: "0.2.0", expected: "0.2.0" },
    { name: "ADD without a version (0.1.0)", command: "ADD", raw: undefined, expected: "0.1.0" },
    { name: "DEL with an empty version (0.1.0)", command: "DEL", raw: "", expected: "0.1.0" },
    { name: 'ADD with a null version (read as "", so 0.1.0, as skel\'s decoder does)', command: "ADD", raw: null, expected: "0.1.0" },
    { name: "CHECK at its floor 0.4.0", command: "CHECK", raw: "0.4.0", expected: "0.4.0" },
    { name: "GC at 1.1.0", command: "GC", raw: "1.1.0", expected: "1.1.0" },
    { name: "STATUS at 1.1.0", command: "STATUS", raw: "1.1.0", expected: "1.1.0" },
  ])("accepts $name", ({ command, raw, expected }) => {
    expect(checkVersion(command, raw)).toBe(expected);
  });

  it.each([
    { name: "an unknown version", raw: "1.2.0", shown: '"1.2.0"' },
    { name: "a two-part version", raw: "1.0", shown: '"1.0"' },
  ])("rejects $name with code 1", ({ raw, shown }) => {
    const err = failure(() => checkVersion("ADD", raw));
    expect(err.code).toBe(Code.IncompatibleCNIVersion);
    expect(err.message).toBe("incompatible CNI versions");
    expect(err.details).toBe(`config is ${shown}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`);
  });

  // skel decodes cniVersion into a Go string: anything else is a decoding failure.
  it.each([
    { name: "a number", raw: 1, shown: "1" },
    { name: "an object", raw: {}, shown: "{}" },
    { name: "a boolean", raw: true, shown: "true" },
    { name: "a list", raw: ["1.1.0"], shown: '["1.1.0"]' },
  ])("rejects $name with code 6", ({ raw, shown }) => {
    const err = failure(() => checkVersion("DEL", raw));
    expect(err.code).toBe(Code.DecodingFailure);
    expect(err.message).toBe(`cniVersion must be a version string such as "1.1.0", got ${shown}`);
  });

  it.each([
    { name: "CHECK at 0.3.1", command: "CHECK", raw: "0.3.1", floor: "0.4.0" },
    { name: "CHECK without a version", command: "CHECK", raw: undefined, floor: "0.4.0" },
    { name: "GC at 1.0.0", command: "GC", raw: "1.0.0", floor: "1.1.0" },
    { name: "STATUS at 0.4.0", command: "STATUS", raw: "0.4.0", floor: "1.1.0" },
  ])("refuses $name, below the command's floor", ({ command, raw, floor }) => {
    const err = failure(() => checkVersion(command, raw));
    expect(err.code).toBe(Code.IncompatibleCNIVersion);
    expect(err.message).toBe(`config version does not allow ${command}`);
    expect(err.details).toBe(`${command} needs cniVersion ${floor} or later; the config says ${raw ?? "0.1.0"}`);
  });
});
