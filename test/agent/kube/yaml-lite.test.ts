// yaml-lite, the YAML subset the agent reads kubeconfigs with: the fixture files parse to what
// kubectl means by them (kind.yaml is kind.json), the shapes the writers use, and the
// constructs it refuses with a line number rather than guessing.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { YamlError, parseYaml } from "../../../src/agent/kube/yaml-lite";
import { FIXTURES } from "../../helpers/plugin";

const read = (name: string) => readFileSync(join(FIXTURES, "kubeconfig", name), "utf8");

function refused(text: string): YamlError {
  try {
    parseYaml(text);
  } catch (e) {
    expect(e).toBeInstanceOf(YamlError);
    return e as YamlError;
  }
  throw new Error(`accepted: ${JSON.stringify(text)}`);
}

describe("yaml-lite: the fixtures", () => {
  it("kind.yaml parses to kind.json, value for value", () => {
    expect(parseYaml(read("kind.yaml"))).toEqual(JSON.parse(read("kind.json")));
  });

  it("JSON is YAML: kind.json parses to itself", () => {
    expect(parseYaml(read("kind.json"))).toEqual(JSON.parse(read("kind.json")));
  });

  it("kubectl-multi.yaml: indentless lists, booleans, an IPv6 URL, null, nested lists", () => {
    const doc = parseYaml(read("kubectl-multi.yaml")) as any;
    expect(doc["current-context"]).toBe("prod-files");
    expect(doc.clusters.map((c: any) => c.name)).toEqual(["dev", "prod"]);
    expect(doc.clusters[0].cluster["insecure-skip-tls-verify"]).toBe(true);
    expect(doc.clusters[1].cluster.server).toBe("https://[fd00::1]:6443");
    const eks = doc.users.find((u: any) => u.name === "eks").user.exec;
    expect(eks.args).toEqual(["eks", "get-token", "--cluster-name", "prod"]);
    expect(eks.env).toBeNull();
    expect(eks.provideClusterInfo).toBe(false);
    expect(doc.users.find((u: any) => u.name === "gke").user["auth-provider"]).toEqual({ config: {}, name: "gcp" });
  });

  it("cloud.yaml: comments, names with ':' and '/', a plain value folded over two lines, flow {}", () => {
    const doc = parseYaml(read("cloud.yaml")) as any;
    expect(doc["current-context"]).toBe("minikube"); // the trailing "# ..." is a comment
    expect(doc.preferences).toEqual({});
    expect(doc.contexts.map((c: any) => c.name)).toContain("arn:aws:eks:us-west-2:123456789012:cluster/prod");
    const gke = doc.users[0].user.exec;
    expect(gke.installHint).toBe(
      "Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin",
    );
    expect(doc.clusters[2].cluster.extensions[0].extension["last-update"]).toBe("Tue, 05 Dec 2023 10:00:00 UTC");
  });
});

describe("yaml-lite: scalars (YAML 1.2 core schema) and quoting", () => {
  it("resolves plain scalars; quoted ones stay strings", () => {
    expect(parseYaml("a: 1\nb: -2.5\nc: true\nd: null\ne: ~\nf: 0x1F\ng: yes\nh: '1'\ni: \"true\"\nj:\n")).toEqual({
      a: 1,
      b: -2.5,
      c: true,
      d: null,
      e: null,
      f: 31,
      g: "yes", // YAML 1.1's booleans are strings in 1.2
      h: "1",
      i: "true",
      j: null,
    });
  });

  it("double-quoted escapes, single-quoted '' and folding of quoted lines", () => {
    expect(parseYaml('a: "x\\ty\\n\\u00e9\\"z"\nb: \'it\'\'s\'\nc: "one\n  two"\n')).toEqual({ a: 'x\ty\né"z', b: "it's", c: "one two" });
  });

  it("a document with --- and ... markers, and a %YAML directive", () => {
    expect(parseYaml("%YAML 1.2\n---\na: 1\n...\n")).toEqual({ a: 1 });
  });
});

describe("yaml-lite: refused with the line number", () => {
  it.each([
    ["a block scalar", "a: 1\nb: |\n  x\n", 2, "block scalars"],
    ["an anchor", "a: &x 1\n", 1, "anchors"],
    ["an alias", "a: 1\nb: *x\n", 2, "aliases"],
    ["a tag", "a: !!str 1\n", 1, "tags"],
    ["a tab in the indentation", "a:\n\tb: 1\n", 2, "tab"],
    ["a second document", "a: 1\n---\nb: 2\n", 2, "second document"],
    ["a duplicate key", "a: 1\na: 2\n", 2, "duplicate key"],
    ["an unclosed flow collection", "a: [1, 2\n", 1, "never closed"],
    ["a plain value with ': '", "a: b: c\n", 1, "quote the value"],
  ])("%s", (_what, text, line, message) => {
    const e = refused(text);
    expect(e.line).toBe(line);
    expect(e.message).toContain(message);
  });
});
