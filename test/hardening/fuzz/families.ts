// The fault families: where a fault goes (stdin, a config field, an env
// variable, the node file), how often (weight), for which commands, and the
// code and message words it must get.
import { HUGE, INVALID_UTF8, MiB, Raw, badUtf8String, deepArr, deepObj, depth, encode, throwsJson } from "./bytes";
import { multiPoolFault } from "./multi-pool";
import { nodeFault } from "./node-file";
import { type Family, type Fault, NAME_OK, type Target, VERSIONS, ipamOf } from "./types";
import {
  WRONG_FOR_BOOL,
  WRONG_FOR_STRING,
  badArgsPair,
  badContainerID,
  badDns,
  badIfname,
  badPath,
  badRequest,
  badRoutes,
  badSeconds,
} from "./values";

export const ALL: readonly Target[] = ["ADD-new", "ADD-existing", "DEL", "CHECK", "GC", "STATUS"];
const PER_CONTAINER: readonly Target[] = ["ADD-new", "ADD-existing", "DEL", "CHECK"];

export const FAMILIES: Family[] = [
  {
    name: "stdin",
    weight: 14,
    targets: ALL,
    apply(r, s) {
      const text = encode(s.conf);
      const six = (variant: string, b: Buffer): Fault => {
        s.stdin = b;
        return { variant, codes: [6], mentions: ["stdin"] };
      };
      return r.gen<Fault>([
        () => six("truncated JSON", text.subarray(0, r.int(0, text.length))),
        () => six("empty or blank", Buffer.from(r.pick(["", " ", "\n", "\t \r\n", " ".repeat(1000)]))),
        () => six("not an object", Buffer.from(r.pick(["[]", "null", "42", '"podnet"', "true", "[{}]", `[${text.toString("utf8")}]`]))),
        () => six("deeply nested array", deepArr(r.int(2_000, 500_000)).bytes),
        () => {
          const n = r.int(1, 4096);
          const b = Buffer.alloc(n);
          for (let i = 0; i < n; i++) b[i] = r.int(0, 256);
          b[0] = r.pick([0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xfe, 0xff]);
          return six("random non-UTF-8 bytes", b);
        },
        () => {
          for (let tries = 0; tries < 50; tries++) {
            const i = r.int(0, text.length);
            if (!'{}[],:"'.includes(String.fromCharCode(text[i]!))) continue;
            const b = Buffer.concat([text.subarray(0, i), Buffer.from(r.pick(INVALID_UTF8)), text.subarray(i + 1)]);
            if (throwsJson(b)) return six("non-UTF-8 bytes in place of JSON syntax", b);
          }
          return six("random non-UTF-8 bytes", Buffer.from([0xff, 0xff]));
        },
        () => {
          const b = r.chance(0.5) ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]) : Buffer.from(text.toString("utf8"), "utf16le");
          if (!throwsJson(b)) throw new Error("generator bug: BOM/UTF-16 stdin parses");
          return six("BOM or UTF-16", b);
        },
        () => {
          const b = Buffer.concat([text, Buffer.from(r.pick(["}", "x", "{}", ",", "\u0000", "]", '"']))]);
          if (!throwsJson(b)) throw new Error("generator bug: trailing garbage parses");
          return six("trailing garbage", b);
        },
        () => six("over 1 MiB", encode({ ...s.conf, padding: "p".repeat(MiB + r.int(0, MiB)) })),
        () => {
          // Keeps the config's cniVersion, so CHECK/GC/STATUS pass the version check and reach the name.
          const v = s.conf.cniVersion as string;
          s.stdin = Buffer.concat([Buffer.from(`{"cniVersion":"${v}","a":`), deepObj(r.int(2_000, 150_000)).bytes, Buffer.from("}")]);
          return { variant: "deeply nested object without a name", codes: [7], mentions: ["name"] };
        },
      ]);
    },
  },
  {
    name: "non-UTF-8 in a value",
    weight: 3,
    targets: ALL,
    apply(r, s) {
      const which = r.int(0, 3);
      if (which === 0) {
        s.conf.name = badUtf8String(r, "pod", "net");
        return { variant: "name", codes: [7], mentions: ["network name"] };
      }
      if (which === 1) {
        s.conf.cniVersion = badUtf8String(r, "1.", "0");
        return { variant: "cniVersion", codes: [1], mentions: ["version"] };
      }
      ipamOf(s).routes = [{ dst: badUtf8String(r, "0.0.0.0/", "") }];
      return { variant: "ipam.routes[0].dst", codes: [7], mentions: ["ipam.routes[0].dst"] };
    },
  },
  {
    name: "name",
    weight: 6,
    targets: ALL,
    apply(r, s) {
      for (;;) {
        const v = r.gen<unknown>([
          () => r.pick([...WRONG_FOR_STRING, null]),
          () =>
            r.pick([
              "",
              "../podnet",
              "pod/net",
              "..",
              ".",
              "-podnet",
              "_podnet",
              ".podnet",
              "pod net",
              "pod\nnet",
              "pod\u0000net",
              "pod\tnet",
              "pödnet",
              "pod:net",
              "/etc",
              "pod@net",
              "../../../../tmp/x",
            ]),
          () => "a".repeat(r.int(201, 5000)),
          () => HUGE,
          () => deepArr(depth(r)),
          () => deepObj(depth(r)),
          () => undefined,
        ]);
        if (typeof v === "string" && NAME_OK(v)) continue;
        if (v === undefined) delete s.conf.name;
        else s.conf.name = v;
        return {
          variant:
            v === undefined ? "missing" : typeof v === "string" ? "invalid string" : v instanceof Raw ? "deeply nested" : "wrong type",
          codes: [7],
          mentions: ["network name"],
        };
      }
    },
  },
  {
    name: "cniVersion",
    weight: 6,
    targets: ALL,
    apply(r, s, { target }) {
      const floor = target === "CHECK" ? VERSIONS.slice(0, 4) : target === "GC" || target === "STATUS" ? VERSIONS.slice(0, 6) : [];
      if (floor.length > 0 && r.chance(0.3)) {
        const v = r.chance(0.2) ? undefined : r.pick(floor);
        if (v === undefined) delete s.conf.cniVersion;
        else s.conf.cniVersion = v;
        return { variant: "below the command's floor", codes: [1], mentions: ["version"] };
      }
      const v = r.gen<unknown>([
        () => r.pick([1, 1.1, 0, true, [], ["1.1.0"], {}, { v: "1.1.0" }]),
        () =>
          r.pick([
            "1.2.0",
            "2.0.0",
            "0.0.0",
            "v1.0.0",
            "1.0",
            "1",
            "1.1.0 ",
            " 1.1.0",
            "1.1.0\n",
            "1.1.0\u0000",
            "../1.1.0",
            "1.1.0-rc1",
            "01.1.0",
            "latest",
          ]),
        () => HUGE,
        () => deepArr(depth(r)),
        () => deepObj(depth(r)),
      ]);
      s.conf.cniVersion = v;
      // An unsupported string is code 1; anything but a string (or null) cannot be decoded: 6, as skel gives.
      return {
        variant: v instanceof Raw ? "deeply nested" : typeof v === "string" ? "unsupported string" : "wrong type",
        codes: [typeof v === "string" ? 1 : 6],
        mentions: ["version"],
      };
    },
  },
  {
    name: "ipam",
    weight: 3,
    targets: ALL,
    apply(r, s) {
      const v = r.pick<unknown>([undefined, null, 5, "podcidr-ipam", true, [], [{ type: "podcidr-ipam" }], deepArr(depth(r))]);
      if (v === undefined) delete s.conf.ipam;
      else s.conf.ipam = v;
      return { variant: v === undefined ? "missing" : v instanceof Raw ? "deeply nested" : "wrong type", codes: [7], mentions: ["ipam"] };
    },
  },
  {
    name: "ipam key",
    weight: 24,
    targets: ALL,
    apply(r, s, { ctx }) {
      const ipam = ipamOf(s);
      const key = r.pick(["nodeFile", "dataDir", "waitForPodCIDRs", "reuseCooldown", "lockTimeout", "gateway", "routes", "dns"]);
      const simple = (v: unknown): Fault => {
        ipam[key] = v;
        const kind =
          v instanceof Raw
            ? /^[[{]/.test(v.bytes.subarray(0, 1).toString())
              ? "deeply nested"
              : "out of range"
            : typeof v === "string" && v.length >= 4096
              ? "huge"
              : "invalid";
        return { variant: `ipam.${key} ${kind}`, codes: [7], mentions: [`ipam.${key}`] };
      };
      switch (key) {
        case "nodeFile":
        case "dataDir":
          return simple(badPath(r, ctx));
        case "waitForPodCIDRs":
          return simple(badSeconds(r, 0, 600));
        case "reuseCooldown":
          return simple(badSeconds(r, 0, 86400));
        case "lockTimeout":
          return simple(badSeconds(r, 0.001, 3600));
        case "gateway":
          return simple(r.chance(0.15) ? deepArr(depth(r)) : r.pick(WRONG_FOR_BOOL));
        case "routes":
          return badRoutes(r, ipam);
        default:
          return badDns(r, ipam);
      }
    },
  },
  {
    name: "runtimeConfig/args",
    weight: 7,
    targets: ["ADD-new", "ADD-existing"],
    apply(r, s) {
      const badIps = (): unknown =>
        r.pick<unknown>([5, "10.0.2.50", true, {}, [5], [null], [["10.0.2.50"]], [{}], deepArr(depth(r)), deepObj(depth(r))]);
      return r.gen<Fault>([
        () => {
          s.conf.runtimeConfig = r.pick<unknown>([5, "ips", true, [], ["10.0.2.50"], deepArr(depth(r))]);
          return { variant: "runtimeConfig wrong type", codes: [7], mentions: ["runtimeConfig"] };
        },
        () => {
          s.conf.runtimeConfig = { ips: badIps() };
          return { variant: "runtimeConfig.ips wrong type", codes: [7], mentions: ["runtimeConfig.ips"] };
        },
        () => {
          s.conf.args = r.pick<unknown>([5, "cni", true, [], deepArr(depth(r))]);
          return { variant: "args wrong type", codes: [7], mentions: ["args"] };
        },
        () => {
          s.conf.args = { cni: r.pick<unknown>([5, "ips", true, [], deepArr(depth(r))]) };
          return { variant: "args.cni wrong type", codes: [7], mentions: ["args.cni"] };
        },
        () => {
          s.conf.args = { cni: { ips: badIps() } };
          return { variant: "args.cni.ips wrong type", codes: [7], mentions: ["args.cni.ips"] };
        },
      ]);
    },
  },
  {
    name: "requested address",
    weight: 7,
    targets: ["ADD-new", "ADD-existing"],
    apply(r, s, { ctx, target }) {
      const q = badRequest(r, ctx, target, s.env);
      const where = r.int(0, 3);
      if (where === 0) {
        const v = q.value.replace(/;/g, "");
        s.env.CNI_ARGS = [s.env.CNI_ARGS, `IP=${v}`].filter(Boolean).join(";");
      } else if (where === 1) s.conf.runtimeConfig = { ips: q.value.split(",") };
      else s.conf.args = { cni: { ips: q.value.split(",") } };
      return {
        variant: `${q.variant} (${["CNI_ARGS IP=", "runtimeConfig.ips", "args.cni.ips"][where]})`,
        codes: [q.code],
        mentions: ["request"],
      };
    },
  },
  {
    name: "prevResult",
    weight: 2,
    targets: ["CHECK"],
    apply(r, s) {
      if (r.chance(0.5)) {
        s.conf.prevResult = r.pick<unknown>([5, "10.0.2.2/24", true, [], ["10.0.2.2/24"], deepArr(depth(r))]);
        return { variant: "prevResult wrong type", codes: [7], mentions: ["prevResult"] };
      }
      s.conf.prevResult = { cniVersion: s.conf.cniVersion, ips: r.pick<unknown>([5, "10.0.2.2/24", true, {}, deepObj(depth(r))]) };
      return { variant: "prevResult.ips wrong type", codes: [7], mentions: ["prevResult.ips"] };
    },
  },
  {
    name: "GC attachments",
    weight: 3,
    targets: ["GC"],
    apply(r, s) {
      const key = r.chance(0.7) ? "cni.dev/valid-attachments" : "cni.dev/attachments";
      const list = s.conf["cni.dev/valid-attachments"] as unknown[];
      delete s.conf["cni.dev/valid-attachments"];
      if (r.chance(0.4)) {
        s.conf[key] = r.pick<unknown>([5, "seed-a", true, {}, { containerID: "seed-a", ifname: "eth0" }, deepObj(depth(r))]);
        return { variant: "list wrong type", codes: [7], mentions: [key] };
      }
      const i = r.int(0, list.length + 1);
      list.splice(
        i,
        0,
        r.pick<unknown>([
          5,
          "seed-a",
          null,
          true,
          [],
          {},
          { containerID: 5, ifname: "eth0" },
          { containerID: "seed-a" },
          { ifname: "eth0" },
          { containerID: "seed-a", ifname: [] },
          deepArr(depth(r)),
        ]),
      );
      s.conf[key] = list;
      return { variant: "entry wrong type", codes: [7], mentions: [`${key}[${i}]`] };
    },
  },
  {
    name: "env",
    weight: 16,
    targets: ALL,
    apply(r, s, { ctx, target }) {
      const cmd = s.env.CNI_COMMAND!;
      const options: (() => Fault)[] = [
        () => {
          s.env.CNI_COMMAND = r.pick([
            "add",
            "Add",
            "ADD ",
            " ADD",
            "ADD\n",
            "../ADD",
            "ADD;DEL",
            "",
            "DELETE",
            "VERSIONS",
            "C".repeat(ctx.exe ? 100_000 : 1_000_000),
            ...(ctx.exe ? [] : ["ADD\u0000"]),
          ]);
          return { variant: "CNI_COMMAND unknown", codes: [4], mentions: ["CNI_COMMAND"] };
        },
      ];
      const required =
        {
          ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
          CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
          DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
          GC: ["CNI_PATH"],
          STATUS: [] as string[],
        }[cmd] ?? [];
      if (required.length > 0) {
        options.push(() => {
          const v = r.pick(required);
          s.env[v] = r.chance(0.5) ? undefined : "";
          return { variant: "required variable missing or empty", codes: [4], mentions: [v] };
        });
      }
      if (PER_CONTAINER.includes(target)) {
        options.push(
          () => {
            s.env.CNI_CONTAINERID = badContainerID(r, ctx);
            return { variant: "CNI_CONTAINERID invalid", codes: [4], mentions: ["CNI_CONTAINERID"] };
          },
          () => {
            s.env.CNI_IFNAME = badIfname(r, ctx);
            return { variant: "CNI_IFNAME invalid", codes: [4], mentions: ["CNI_IFNAME"] };
          },
          () => {
            s.env.CNI_ARGS = badArgsPair(r, ctx);
            return { variant: "CNI_ARGS pair without =", codes: [4], mentions: ["CNI_ARGS"] };
          },
        );
      }
      return r.gen(options);
    },
  },
  {
    name: "node file",
    weight: 20,
    targets: ["ADD-new", "ADD-existing", "STATUS"],
    apply(r, s, { ctx, id, target }) {
      return nodeFault(r, s, ctx, id, target);
    },
  },
  {
    name: "multi-pool",
    weight: 8,
    targets: ["ADD-new", "ADD-existing", "STATUS"],
    apply(r, s, { ctx, id, target }) {
      return multiPoolFault(r, s, ctx, id, target);
    },
  },
];
