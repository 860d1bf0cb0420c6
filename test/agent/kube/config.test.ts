// Where the agent's credentials come from: --kubeconfig, else KUBECONFIG's first file, else
// in cluster (KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount's token file with ca.crt
// beside it; the token path is an option, so the files here are temp files), else
// ~/.kube/config. And the token file's re-reads (credentials.ts).
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TOKEN_FILE, inClusterConfig, loadConfig } from "../../../src/agent/kube/config";
import { TOKEN_MAX_AGE_MS, fileTokenSource } from "../../../src/agent/kube/credentials";
import { KubeError } from "../../../src/agent/kube/errors";
import { FIXTURES } from "../../helpers/plugin";

const CA = readFileSync(join(FIXTURES, "kubeconfig/pki/ca.crt"), "utf8");
const tmp = mkdtempSync(join(tmpdir(), "podcidr-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A ServiceAccount folder as the kubelet projects it: token and ca.crt. Returns the token's path. */
function serviceAccount(name: string, token = "sa-token-1", ca = CA): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "token"), token);
  writeFileSync(join(dir, "ca.crt"), ca);
  return join(dir, "token");
}
const POD = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };

function refusal(f: () => unknown): KubeError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(KubeError);
    return e as KubeError;
  }
  throw new Error("accepted");
}

describe("in cluster", () => {
  it("https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the token file, and ca.crt beside it", () => {
    const tokenFile = serviceAccount("sa1");
    const cfg = inClusterConfig({ env: POD, tokenFile });
    expect(cfg.server).toBe("https://10.96.0.1:443");
    expect(cfg.ca).toBe(CA);
    expect(cfg.auth?.token()).toBe("sa-token-1");
    expect(cfg.insecureSkipTlsVerify).toBe(false);
    expect(cfg.source).toContain(`token ${tokenFile}`);
    expect(TOKEN_FILE).toBe("/var/run/secrets/kubernetes.io/serviceaccount/token");
  });

  it("an IPv6 service address is bracketed", () => {
    const cfg = inClusterConfig({
      env: { KUBERNETES_SERVICE_HOST: "fd00:10:96::1", KUBERNETES_SERVICE_PORT: "443" },
      tokenFile: serviceAccount("sa6"),
    });
    expect(cfg.server).toBe("https://[fd00:10:96::1]:443");
  });

  it("the rotated token is read again after a minute (the kubelet replaces the file)", () => {
    const tokenFile = serviceAccount("sa-rot");
    let now = 0;
    const cfg = inClusterConfig({ env: POD, tokenFile, now: () => now });
    writeFileSync(tokenFile, "sa-token-2");
    now = TOKEN_MAX_AGE_MS - 1;
    expect(cfg.auth?.token()).toBe("sa-token-1");
    now = TOKEN_MAX_AGE_MS;
    expect(cfg.auth?.token()).toBe("sa-token-2");
  });

  it("refuses, naming what is wrong: no port, a bad port, a bad host, no ca.crt, an empty token", () => {
    const tokenFile = serviceAccount("sa-bad");
    expect(refusal(() => inClusterConfig({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1" }, tokenFile })).message).toContain(
      'KUBERNETES_SERVICE_PORT ("") must both be set',
    );
    expect(refusal(() => inClusterConfig({ env: { ...POD, KUBERNETES_SERVICE_PORT: "https" }, tokenFile })).message).toContain(
      'KUBERNETES_SERVICE_PORT "https" must be a port number',
    );
    expect(refusal(() => inClusterConfig({ env: { ...POD, KUBERNETES_SERVICE_HOST: "a b" }, tokenFile })).message).toContain(
      "must be a host name or an IP address",
    );
    rmSync(join(tmp, "sa-bad", "ca.crt"));
    expect(refusal(() => inClusterConfig({ env: POD, tokenFile })).message).toMatch(
      /the ServiceAccount CA .*sa-bad\/ca.crt cannot be read: ENOENT/,
    );
    const empty = serviceAccount("sa-empty", "  \n");
    expect(refusal(() => inClusterConfig({ env: POD, tokenFile: empty })).message).toMatch(
      /ServiceAccount token file .*sa-empty\/token is empty/,
    );
  });
});

describe("loadConfig: the order", () => {
  const kind = join(FIXTURES, "kubeconfig/kind.yaml");
  const multi = join(tmp, "multi");
  mkdirSync(multi, { recursive: true });
  cpSync(join(FIXTURES, "kubeconfig"), multi, { recursive: true });

  it("--kubeconfig first, even in a pod with KUBECONFIG set", () => {
    const cfg = loadConfig({ kubeconfig: kind, env: { ...POD, KUBECONFIG: join(multi, "kubectl-multi.yaml") } });
    expect(cfg.server).toBe("https://127.0.0.1:38417");
  });

  it("then KUBECONFIG: the first file of the list only, with a warning that the others are not merged", () => {
    const cfg = loadConfig({ env: { ...POD, KUBECONFIG: `${join(multi, "kubectl-multi.yaml")}:${kind}` } });
    expect(cfg.server).toBe("https://[fd00::1]:6443");
    expect(cfg.warnings.join("\n")).toContain("KUBECONFIG lists 2 files; podcidr-ipam reads only the first");
  });

  it("then in cluster, where --context makes no sense", () => {
    const tokenFile = serviceAccount("sa-order");
    expect(loadConfig({ env: POD, tokenFile }).server).toBe("https://10.96.0.1:443");
    expect(refusal(() => loadConfig({ env: POD, tokenFile, context: "x" })).message).toContain(
      "needs a kubeconfig; in cluster there is none",
    );
  });

  it("then ~/.kube/config; with none of them, an error that says what to do", () => {
    const home = join(tmp, "home");
    mkdirSync(join(home, ".kube"), { recursive: true });
    expect(refusal(() => loadConfig({ env: { HOME: home } })).details).toContain("pass --kubeconfig FILE");
    cpSync(kind, join(home, ".kube/config"));
    expect(loadConfig({ env: { HOME: home } }).server).toBe("https://127.0.0.1:38417");
  });
});

describe("token files (credentials.ts)", () => {
  it("a failed re-read keeps the last good token, and is tried again at the next call", () => {
    const path = join(tmp, "tok");
    writeFileSync(path, "one");
    let now = 0;
    const src = fileTokenSource(path, "token file", { now: () => now, tokenMaxAgeMs: 10 });
    rmSync(path);
    now = 10;
    expect(src.token()).toBe("one");
    writeFileSync(path, "two");
    expect(src.token()).toBe("two");
  });

  it("the first read must succeed", () => {
    expect(refusal(() => fileTokenSource(join(tmp, "never"), "token file")).message).toMatch(/token file .*never cannot be read: ENOENT/);
  });
});
