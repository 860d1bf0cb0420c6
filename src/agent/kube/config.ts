// Where the agent's API credentials come from, in client-go's order (controller-runtime's
// GetConfig): --kubeconfig, else the first file of KUBECONFIG, else in cluster (the pod's
// ServiceAccount token and CA), else ~/.kube/config. HTTPS_PROXY and friends are not used.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { configError } from "./errors.js";
import { type KubeConfig, type LoadOptions, fileTokenSource, readPemFile } from "./credentials.js";
import { kubeconfigFile } from "./kubeconfig.js";

export type { KubeConfig, LoadOptions, TokenSource } from "./credentials.js";

export const TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** The credentials to use, by the order above; throws KubeError (reason "BadConfig") naming what is wrong. */
export function loadConfig(opts: LoadOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  if (opts.kubeconfig) return kubeconfigFile(opts.kubeconfig, opts);
  const list = (env.KUBECONFIG ?? "").split(":").filter((p) => p !== "");
  if (list.length > 0) {
    const cfg = kubeconfigFile(list[0]!, opts);
    if (list.length === 1) return cfg;
    const note = `KUBECONFIG lists ${list.length} files; podcidr-ipam reads only the first (${list[0]}), it does not merge them`;
    return { ...cfg, warnings: [...cfg.warnings, note] };
  }
  if (env.KUBERNETES_SERVICE_HOST) {
    if (opts.context) throw configError(`--context ${JSON.stringify(opts.context)} needs a kubeconfig; in cluster there is none`);
    return inClusterConfig(opts);
  }
  const home = env.HOME || homedir();
  if (existsSync(join(home, ".kube/config"))) return kubeconfigFile(join(home, ".kube/config"), opts);
  throw configError(
    "no Kubernetes API credentials: KUBERNETES_SERVICE_HOST is unset (not in a pod), " +
      "and there is no --kubeconfig, KUBECONFIG or ~/.kube/config",
    "run it as the DaemonSet's pod, or pass --kubeconfig FILE",
  );
}

/** In a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the ServiceAccount's token file and ca.crt beside it. */
export function inClusterConfig(opts: LoadOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  const host = env.KUBERNETES_SERVICE_HOST ?? "";
  const port = env.KUBERNETES_SERVICE_PORT ?? "";
  if (host === "" || port === "") {
    throw configError(
      `in cluster, KUBERNETES_SERVICE_HOST (${JSON.stringify(host)}) and ` +
        `KUBERNETES_SERVICE_PORT (${JSON.stringify(port)}) must both be set`,
      "the kubelet sets them in every pod; outside a pod pass --kubeconfig FILE",
    );
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw configError(`KUBERNETES_SERVICE_PORT ${JSON.stringify(port)} must be a port number (1-65535)`);
  }
  if (/[/\s@]/.test(host)) throw configError(`KUBERNETES_SERVICE_HOST ${JSON.stringify(host)} must be a host name or an IP address`);
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const tokenFile = opts.tokenFile ?? TOKEN_FILE;
  const caFile = join(dirname(tokenFile), "ca.crt");
  const ca = readPemFile(caFile, "CERTIFICATE", "the ServiceAccount CA");
  const auth = fileTokenSource(tokenFile, "ServiceAccount token file", opts);
  return {
    server: `https://${bracketed}:${port}`,
    source: `in cluster (KUBERNETES_SERVICE_HOST=${host}, KUBERNETES_SERVICE_PORT=${port}, token ${tokenFile})`,
    ca,
    insecureSkipTlsVerify: false,
    auth,
    warnings: [],
  };
}
