// Kubeconfig files as kind, kubectl and the cloud CLIs write them (test/fixtures/kubeconfig/):
// which context is used, where the server, CA and credentials come from (inline data or a
// file, relative to the kubeconfig), and the refusals that name what is not supported.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kubeconfigFile } from "../../../src/agent/kube/kubeconfig";
import { KubeError } from "../../../src/agent/kube/errors";
import { FIXTURES } from "../../helpers/plugin";

const DIR = join(FIXTURES, "kubeconfig");
const fixture = (name: string) => join(DIR, name);
const pem = (name: string) => readFileSync(join(DIR, "pki", name), "utf8");
const b64 = (s: string) => Buffer.from(s).toString("base64");

const tmp = mkdtempSync(join(tmpdir(), "podcidr-kubeconfig-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
/** A kubeconfig (JSON is YAML) in the temp folder; returns its path. */
function write(cfg: unknown, text = JSON.stringify(cfg)): string {
  const path = join(tmp, `kubeconfig-${n++}`);
  writeFileSync(path, text);
  return path;
}
/** One cluster, one user, one context "c" using them. */
function single(cluster: Record<string, unknown>, user: Record<string, unknown>): unknown {
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "k", cluster: { server: "https://10.0.0.1:6443", ...cluster } }],
    users: [{ name: "u", user }],
    contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
    "current-context": "c",
  };
}

/** The KubeError a load throws (reason BadConfig), or fails. */
function refusal(path: string, context?: string): KubeError {
  try {
    kubeconfigFile(path, context ? { context } : {});
  } catch (e) {
    expect(e).toBeInstanceOf(KubeError);
    expect((e as KubeError).reason).toBe("BadConfig");
    return e as KubeError;
  }
  throw new Error(`${path}${context ? ` (context ${context})` : ""} was accepted`);
}

describe("kubeconfig: what is used", () => {
  it("kind: server, CA and client certificate and key from the -data fields of the current context", () => {
    const cfg = kubeconfigFile(fixture("kind.yaml"));
    expect(cfg.server).toBe("https://127.0.0.1:38417");
    expect(cfg.ca).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(cfg.clientCert).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(cfg.clientKey).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(cfg.auth).toBeUndefined();
    expect(cfg.insecureSkipTlsVerify).toBe(false);
    expect(cfg.source).toContain('(context "kind-kind")');
    expect(cfg.warnings).toEqual([]);
  });

  it("kind.json, the same file as JSON, gives the same configuration", () => {
    const { source: _a, ...fromYaml } = kubeconfigFile(fixture("kind.yaml"));
    const { source: _b, ...fromJson } = kubeconfigFile(fixture("kind.json"));
    expect(fromJson).toEqual(fromYaml);
  });

  it("current-context picks the context: certificate-authority, client-certificate and client-key as files, relative to the kubeconfig", () => {
    const cfg = kubeconfigFile(fixture("kubectl-multi.yaml"));
    expect(cfg.source).toContain('(context "prod-files")');
    expect(cfg.server).toBe("https://[fd00::1]:6443");
    expect(cfg.ca).toBe(pem("ca.crt"));
    expect(cfg.clientCert).toBe(pem("admin.crt"));
    expect(cfg.clientKey).toBe(pem("admin.key"));
    expect(cfg.auth).toBeUndefined();
  });

  it("--context picks another: a token, and insecure-skip-tls-verify (with a warning)", () => {
    const cfg = kubeconfigFile(fixture("kubectl-multi.yaml"), { context: "dev-tok" });
    expect(cfg.server).toBe("https://dev.example.com");
    expect(cfg.auth?.token()).toBe("abc.def.ghi");
    expect(cfg.auth?.invalidate()).toBe(false); // a fixed token: nothing to re-read after a 401
    expect(cfg.insecureSkipTlsVerify).toBe(true);
    expect(cfg.ca).toBeUndefined();
    expect(cfg.warnings.join("\n")).toContain("insecure-skip-tls-verify");
  });

  it("the -data fields win over the file fields, as in clientcmd", () => {
    const path = write(
      single(
        { "certificate-authority-data": b64(pem("ca.crt")), "certificate-authority": "/nonexistent/ca.crt" },
        {
          "client-certificate-data": b64(pem("admin.crt")),
          "client-certificate": "/nonexistent/admin.crt",
          "client-key-data": b64(pem("admin.key")),
          "client-key": "/nonexistent/admin.key",
        },
      ),
    );
    const cfg = kubeconfigFile(path);
    expect([cfg.ca, cfg.clientCert, cfg.clientKey]).toEqual([pem("ca.crt"), pem("admin.crt"), pem("admin.key")]);
  });

  it("tokenFile: read from a file relative to the kubeconfig, re-read after a minute and after a 401, over `token`", () => {
    writeFileSync(join(tmp, "sa-token"), "first\n");
    let now = 1_000_000;
    const path = write(single({ "certificate-authority-data": b64(pem("ca.crt")) }, { tokenFile: "sa-token", token: "inline" }));
    const cfg = kubeconfigFile(path, { now: () => now });
    expect(cfg.auth?.token()).toBe("first");
    expect(cfg.auth?.origin).toContain(join(tmp, "sa-token"));
    writeFileSync(join(tmp, "sa-token"), "second\n");
    expect(cfg.auth?.token()).toBe("first"); // cached for a minute
    now += 60_000;
    expect(cfg.auth?.token()).toBe("second");
    writeFileSync(join(tmp, "sa-token"), "third\n");
    expect(cfg.auth?.invalidate()).toBe(true);
    expect(cfg.auth?.token()).toBe("third");
  });

  it("a tokenFile that cannot be read falls back to `token`; without one it is an error naming the file", () => {
    const withToken = write(single({ "insecure-skip-tls-verify": true }, { tokenFile: "missing-token", token: "inline" }));
    expect(kubeconfigFile(withToken).auth?.token()).toBe("inline");
    const without = write(single({ "insecure-skip-tls-verify": true }, { tokenFile: "missing-token" }));
    expect(refusal(without).message).toMatch(/tokenFile .*missing-token cannot be read: ENOENT/);
  });

  it("a user with no credentials at all goes anonymous, with a warning", () => {
    const cfg = kubeconfigFile(write(single({ "insecure-skip-tls-verify": true }, {})));
    expect(cfg.auth).toBeUndefined();
    expect(cfg.clientCert).toBeUndefined();
    expect(cfg.warnings.join("\n")).toContain("requests go anonymous");
  });

  it("a server with a path prefix (a proxy) keeps it, without the trailing slash", () => {
    const cfg = kubeconfigFile(
      write(single({ server: "https://proxy.example:8443/k8s/clusters/c-1/", "insecure-skip-tls-verify": true }, {})),
    );
    expect(cfg.server).toBe("https://proxy.example:8443/k8s/clusters/c-1");
  });
});

describe("kubeconfig: what is refused, by name", () => {
  it("an exec credential plugin names its command (kubectl-multi's eks, the cloud CLIs' aws and gke-gcloud-auth-plugin)", () => {
    expect(refusal(fixture("kubectl-multi.yaml"), "prod-eks").message).toMatch(
      /user "eks" uses an exec credential plugin \(command "aws"\)/,
    );
    expect(refusal(fixture("cloud.yaml"), "gke_my-project_europe-west1_prod").message).toContain(
      'uses an exec credential plugin (command "gke-gcloud-auth-plugin"), which podcidr-ipam does not run',
    );
    expect(refusal(fixture("cloud.yaml"), "arn:aws:eks:us-west-2:123456789012:cluster/prod").message).toContain('(command "aws")');
  });

  it("an auth-provider names the provider", () => {
    expect(refusal(fixture("kubectl-multi.yaml"), "gke").message).toContain(
      'uses the auth-provider "gcp", which podcidr-ipam does not support',
    );
  });

  it("basic authentication and impersonation", () => {
    expect(refusal(fixture("kubectl-multi.yaml"), "basic").message).toContain("basic authentication (username/password)");
    expect(refusal(write(single({ "insecure-skip-tls-verify": true }, { token: "t", as: "admin" }))).message).toContain(
      "impersonates (as)",
    );
  });

  it("a context that is not there lists the contexts that are", () => {
    const e = refusal(fixture("kubectl-multi.yaml"), "nope");
    expect(e.message).toContain('context "nope" is not there (contexts: "basic", "dev-tok", "gke", "prod-eks", "prod-files")');
  });

  it("a context naming a user or cluster that is not there says which", () => {
    const cfg = single({}, {}) as any;
    cfg.contexts[0].context.user = "ghost";
    expect(refusal(write(cfg)).message).toContain('names user "ghost", which is not there (users: "u")');
    cfg.contexts[0].context = { cluster: "nowhere", user: "u" };
    expect(refusal(write(cfg)).message).toContain('names cluster "nowhere", which is not there (clusters: "k")');
  });

  it("no current-context and no --context", () => {
    const cfg = single({}, {}) as any;
    delete cfg["current-context"];
    expect(refusal(write(cfg)).message).toContain('has no current-context; pass --context NAME (contexts: "c")');
  });

  it("a certificate-authority file that is not there names it (cloud.yaml's minikube, the current context)", () => {
    expect(refusal(fixture("cloud.yaml")).message).toMatch(/certificate-authority \/home\/dev\/\.minikube\/ca\.crt cannot be read: ENOENT/);
  });

  it("CA data that is not base64, or not PEM; a key without a certificate; both insecure and a CA", () => {
    expect(refusal(write(single({ "certificate-authority-data": "not base64!" }, {}))).message).toContain(
      "certificate-authority-data is not base64",
    );
    expect(refusal(write(single({ "certificate-authority-data": b64("hello") }, {}))).message).toContain("is not PEM");
    expect(refusal(write(single({ "insecure-skip-tls-verify": true }, { "client-key-data": b64(pem("admin.key")) }))).message).toContain(
      "has a client key but no client-certificate",
    );
    expect(
      refusal(write(single({ "insecure-skip-tls-verify": true, "certificate-authority-data": b64(pem("ca.crt")) }, {}))).message,
    ).toContain("sets both insecure-skip-tls-verify and a certificate authority");
  });

  it("a server that is not https://, and a proxy-url", () => {
    expect(refusal(write(single({ server: "http://10.0.0.1:8080" }, {}))).message).toContain("is not https://");
    expect(refusal(write(single({ "proxy-url": "http://proxy:3128" }, {}))).message).toContain("sets proxy-url");
  });

  it("a file that is not a kubeconfig, or not YAML, names the file", () => {
    expect(refusal(write(null, "kind: Pod\n")).message).toContain('kind is "Pod", expected "Config"');
    expect(refusal(write(null, "users:\n  - name: a\n    user: |\n      x\n")).message).toMatch(/line 3: block scalars/);
    expect(refusal(join(tmp, "absent")).message).toMatch(/kubeconfig .*absent cannot be read: ENOENT/);
  });
});
