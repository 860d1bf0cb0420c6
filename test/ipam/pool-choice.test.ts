// Which pool a multi-pool attachment draws each family from: args.cni.pool, then ipam.pool,
// then the pod's annotations (per family before ip-pool), then its namespace's, then
// "default" (or an error under require-pool-match), and bad names refused.
import { describe, expect, it } from "vitest";
import { Code } from "../../src/errors.js";
import { type Annotations, type PoolHints, annotationsOf, choosePool } from "../../src/ipam/pool-choice.js";
import { failure } from "../helpers/errors";

const none: PoolHints = { argsPool: "", configPool: "", pod: null, namespace: "team-a" };
const nsMap: Record<string, Annotations> = {
  "team-a": { "ipam.cilium.io/ip-pool": "ns-any", "ipam.cilium.io/ipv6-pool": "ns-v6" },
  strict: { "ipam.cilium.io/require-pool-match": "true" },
};
const lookups: string[] = [];
const ns = (name: string): Annotations => {
  lookups.push(name);
  return nsMap[name] ?? {};
};

describe("choosePool", () => {
  it.each([
    {
      name: "args.cni.pool first",
      h: { argsPool: "multus", configPool: "pinned", pod: { "ipam.cilium.io/ip-pool": "pod" } },
      v4: "multus",
      v6: "multus",
      src: "args.cni.pool",
    },
    {
      name: "then ipam.pool",
      h: { configPool: "pinned", pod: { "ipam.cilium.io/ip-pool": "pod" } },
      v4: "pinned",
      v6: "pinned",
      src: "ipam.pool",
    },
    {
      name: "then the pod's per-family annotation before its ip-pool",
      h: { pod: { "ipam.cilium.io/ip-pool": "pod-any", "ipam.cilium.io/ipv4-pool": "pod-v4" } },
      v4: "pod-v4",
      v6: "pod-any",
      src: "the pod's annotation ipam.cilium.io/ipv4-pool",
    },
    {
      name: "then the namespace's (per family first)",
      h: {},
      v4: "ns-any",
      v6: "ns-v6",
      src: "namespace team-a's annotation ipam.cilium.io/ip-pool",
    },
    { name: "then default", h: { namespace: "plain" }, v4: "default", v6: "default", src: "the default: no source names another" },
    {
      name: "default for a call with no namespace",
      h: { namespace: "" },
      v4: "default",
      v6: "default",
      src: "the default: no source names another",
    },
  ])("$name", ({ h, v4, v6, src }) => {
    const hints = { ...none, ...h } as PoolHints;
    expect(choosePool(hints, 4, ns)).toEqual({ pool: v4, source: src });
    expect(choosePool(hints, 6, ns).pool).toBe(v6);
  });

  it("does not read the namespaces' map when the pod's own hints decide", () => {
    lookups.length = 0;
    choosePool({ ...none, pod: { "ipam.cilium.io/ip-pool": "p" } }, 4, ns);
    choosePool({ ...none, argsPool: "a" }, 6, ns);
    expect(lookups).toEqual([]);
    choosePool(none, 4, ns);
    expect(lookups).toEqual(["team-a"]);
  });

  it("answers 7 instead of default under require-pool-match, set on the pod or on its namespace", () => {
    const onPod = failure(() => choosePool({ ...none, namespace: "plain", pod: { "ipam.cilium.io/require-pool-match": "true" } }, 4, ns));
    expect([onPod.code, onPod.message]).toEqual([
      Code.InvalidNetworkConfig,
      'no pool matches the pod for IPv4, and the pod requires a match (ipam.cilium.io/require-pool-match: "true")',
    ]);
    const onNs = failure(() => choosePool({ ...none, namespace: "strict" }, 6, ns));
    expect(onNs.message).toBe(
      'no pool matches the pod for IPv6, and namespace strict requires a match (ipam.cilium.io/require-pool-match: "true")',
    );
    // "false" or anything but "true" is no requirement.
    expect(choosePool({ ...none, pod: { "ipam.cilium.io/require-pool-match": "yes" }, namespace: "" }, 4, ns).pool).toBe("default");
  });

  it("refuses (7) an annotation that is not a pool name, naming where it is", () => {
    const e = failure(() => choosePool({ ...none, pod: { "ipam.cilium.io/ipv4-pool": "Blue Pool" } }, 4, ns));
    expect([e.code, e.message]).toEqual([
      Code.InvalidNetworkConfig,
      `the pod's annotation ipam.cilium.io/ipv4-pool "Blue Pool" is not a pool name`,
    ]);
    const n = failure(() => choosePool(none, 4, () => ({ "ipam.cilium.io/ip-pool": "x_y" })));
    expect(n.message).toBe(`namespace team-a's annotation ipam.cilium.io/ip-pool "x_y" is not a pool name`);
  });

  it("reads annotations as the runtime passes them, and refuses a capability that is not an object", () => {
    expect(annotationsOf(undefined, "x")).toBeNull();
    expect(annotationsOf({ a: "1", b: 2 }, "x")).toEqual({ a: "1" });
    expect(failure(() => annotationsOf(["a"], "runtimeConfig[...]")).message).toBe("runtimeConfig[...] must be an object of annotations");
  });
});
