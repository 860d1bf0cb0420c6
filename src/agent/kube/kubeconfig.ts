// A kubeconfig file, the subset podcidr-ipam supports: one context (current-context or
// --context), its cluster's server, CA (file or data) or insecure-skip-tls-verify,
// tls-server-name, and its user's token / tokenFile or client certificate and key (files or
// data). Relative paths resolve against the kubeconfig's folder (as clientcmd does). What
// would need code that is not here (exec plugins, auth providers, basic auth,
// impersonation, proxy-url) is refused by name rather than silently ignored.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, resolve } from "node:path";
import { brief, errno } from "../../errors.js";
import {
  type KubeConfig,
  type LoadOptions,
  type TokenSource,
  checkPem,
  fileTokenSource,
  fixedTokenSource,
  readPemFile,
} from "./credentials.js";
import { configError } from "./errors.js";
import { YamlError, parseYaml } from "./yaml-lite.js";

const GIVE_IT =
  "give it a token or a client certificate " +
  "(kubectl create token SERVICEACCOUNT, or kubectl config view --raw of a kind/kubeadm admin config)";

/** Read and resolve a kubeconfig file; throws KubeError (reason "BadConfig") that names the file, the entry and the field. */
export function kubeconfigFile(path: string, opts: LoadOptions = {}): KubeConfig {
  const where = `kubeconfig ${displayPath(path)}`;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw configError(`${where} cannot be read: ${errno(e) ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    if (e instanceof YamlError) throw configError(`${where}: ${e.message}`);
    throw e;
  }
  return resolveKubeconfig(doc, { ...opts, where, dir: dirname(resolve(path)) });
}

/** Resolve a parsed kubeconfig; `where` names it in messages and `dir` is where relative paths start. */
export function resolveKubeconfig(doc: unknown, opts: LoadOptions & { where: string; dir: string }): KubeConfig {
  const { where } = opts;
  if (!isMap(doc))
    throw configError(`${where} is not a kubeconfig: expected a map with clusters, contexts and users, found ${brief(doc, 40)}`);
  if (doc.kind !== undefined && doc.kind !== null && doc.kind !== "Config") {
    throw configError(`${where} is not a kubeconfig: kind is ${brief(doc.kind)}, expected "Config"`);
  }
  const contexts = named(doc, "contexts", "context", where);
  const ctxName = opts.context ?? str(doc["current-context"], `${where}: current-context`);
  if (!ctxName) throw configError(`${where} has no current-context; pass --context NAME (contexts: ${list(contexts)})`);
  const ctx = contexts.get(ctxName);
  if (!ctx) throw configError(`${where}: context ${JSON.stringify(ctxName)} is not there (contexts: ${list(contexts)})`);
  const ctxWhere = `${where}: context ${JSON.stringify(ctxName)}`;
  const clusterName = str(ctx.cluster, `${ctxWhere} cluster`);
  if (!clusterName) throw configError(`${ctxWhere} names no cluster`);
  const clusters = named(doc, "clusters", "cluster", where);
  const cluster = clusters.get(clusterName);
  if (!cluster)
    throw configError(`${ctxWhere} names cluster ${JSON.stringify(clusterName)}, which is not there (clusters: ${list(clusters)})`);
  const userName = str(ctx.user, `${ctxWhere} user`);
  const users = named(doc, "users", "user", where);
  const user = userName ? users.get(userName) : {};
  if (!user) throw configError(`${ctxWhere} names user ${JSON.stringify(userName)}, which is not there (users: ${list(users)})`);

  const warnings: string[] = [];
  const tls = clusterTls(cluster, `${where}: cluster ${JSON.stringify(clusterName)}`, opts.dir, warnings);
  const creds = userCredentials(user, `${where}: user ${JSON.stringify(userName ?? "")}`, opts, warnings);
  return { ...tls, ...creds, source: `${where} (context ${JSON.stringify(ctxName)})`, warnings };
}

// --- internal ---

type Obj = Record<string, unknown>;
const isMap = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function clusterTls(
  c: Obj,
  where: string,
  dir: string,
  warnings: string[],
): Pick<KubeConfig, "server" | "ca" | "insecureSkipTlsVerify" | "tlsServerName"> {
  const server = str(c.server, `${where} server`);
  if (!server) throw configError(`${where} has no server (expected https://HOST:PORT)`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw configError(`${where}: server ${JSON.stringify(server)} is not a URL (expected https://HOST:PORT)`);
  }
  if (url.protocol !== "https:")
    throw configError(`${where}: server ${JSON.stringify(server)} is not https://; podcidr-ipam talks to the API server over TLS only`);
  if (url.username || url.password || url.search || url.hash)
    throw configError(`${where}: server ${JSON.stringify(server)} must be https://HOST[:PORT][/PATH], without user, query or fragment`);
  const proxy = str(c["proxy-url"], `${where} proxy-url`);
  if (proxy)
    throw configError(
      `${where} sets proxy-url ${JSON.stringify(proxy)}, which podcidr-ipam does not support; reach the API server directly`,
    );
  const caData = str(c["certificate-authority-data"], `${where} certificate-authority-data`);
  const caFile = str(c["certificate-authority"], `${where} certificate-authority`);
  const ca = caData
    ? checkPem(b64(caData, `${where} certificate-authority-data`), "CERTIFICATE", `${where} certificate-authority-data`)
    : caFile
      ? readPemFile(resolve(dir, caFile), "CERTIFICATE", `${where} certificate-authority`)
      : undefined;
  const insecure = bool(c["insecure-skip-tls-verify"], `${where} insecure-skip-tls-verify`);
  if (insecure && ca)
    throw configError(`${where} sets both insecure-skip-tls-verify and a certificate authority; keep one (clientcmd refuses this too)`);
  if (insecure) warnings.push(`${where} sets insecure-skip-tls-verify: the API server's certificate is not checked`);
  const tlsServerName = str(c["tls-server-name"], `${where} tls-server-name`);
  const base = `https://${url.host}${url.pathname.replace(/\/+$/, "")}`;
  return { server: base, ca, insecureSkipTlsVerify: insecure, ...(tlsServerName ? { tlsServerName } : {}) };
}

function userCredentials(
  u: Obj,
  where: string,
  opts: LoadOptions & { dir: string },
  warnings: string[],
): Pick<KubeConfig, "clientCert" | "clientKey" | "auth"> {
  if (u.exec !== undefined && u.exec !== null) {
    const command = isMap(u.exec) ? str(u.exec.command, `${where} exec.command`) : undefined;
    throw configError(
      `${where} uses an exec credential plugin (command ${JSON.stringify(command ?? "")}), which podcidr-ipam does not run; ${GIVE_IT}`,
    );
  }
  if (u["auth-provider"] !== undefined && u["auth-provider"] !== null) {
    const name = isMap(u["auth-provider"]) ? str(u["auth-provider"].name, `${where} auth-provider.name`) : undefined;
    throw configError(`${where} uses the auth-provider ${JSON.stringify(name ?? "")}, which podcidr-ipam does not support; ${GIVE_IT}`);
  }
  if (u.username !== undefined || u.password !== undefined) {
    throw configError(
      `${where} uses basic authentication (username/password), which podcidr-ipam does not support ` +
        `(kube-apiserver dropped it in 1.19); ${GIVE_IT}`,
    );
  }
  const imp = ["as", "as-uid", "as-groups", "as-user-extra"].filter((k) => u[k] !== undefined && u[k] !== null);
  if (imp.length > 0)
    throw configError(
      `${where} impersonates (${imp.join(", ")}), which podcidr-ipam does not support; use that identity's own credentials`,
    );

  const cert = pemField(u, "client-certificate", "CERTIFICATE", where, opts.dir);
  const key = pemField(u, "client-key", "PRIVATE KEY", where, opts.dir);
  if (cert && !key) throw configError(`${where} has a client certificate but no client-key or client-key-data`);
  if (key && !cert) throw configError(`${where} has a client key but no client-certificate or client-certificate-data`);
  const token = str(u.token, `${where} token`);
  const tokenFile = str(u.tokenFile, `${where} tokenFile`);
  let auth: TokenSource | undefined;
  // client-go: the file is re-read periodically and its last good value wins over `token`.
  if (tokenFile)
    auth = fileTokenSource(resolve(opts.dir, tokenFile), `${where} tokenFile`, { ...opts, ...(token ? { fallback: token } : {}) });
  else if (token) auth = fixedTokenSource(token, `the token of ${where.replace(/^.*: /, "")}`);
  if (!cert && !auth) warnings.push(`${where} has no token and no client certificate: requests go anonymous`);
  return { ...(cert ? { clientCert: cert, clientKey: key } : {}), ...(auth ? { auth } : {}) };
}

/** `<name>-data` (base64 PEM) or `<name>` (a PEM file), checked to hold a `label` block. */
function pemField(u: Obj, name: string, label: string, where: string, dir: string): string | undefined {
  const data = str(u[`${name}-data`], `${where} ${name}-data`);
  if (data) return checkPem(b64(data, `${where} ${name}-data`), label, `${where} ${name}-data`);
  const file = str(u[name], `${where} ${name}`);
  return file ? readPemFile(resolve(dir, file), label, `${where} ${name}`) : undefined;
}

/** `doc[key]`: a list of {name, <inner>: map} entries, by name (the first of a duplicated name wins). */
function named(doc: Obj, key: string, inner: string, where: string): Map<string, Obj> {
  const v = doc[key];
  const out = new Map<string, Obj>();
  if (v === undefined || v === null) return out;
  if (!Array.isArray(v)) throw configError(`${where}: ${key} must be a list of {name, ${inner}} entries, not ${brief(v, 40)}`);
  v.forEach((e, i) => {
    const name = isMap(e) ? str(e.name, `${where}: ${key}[${i}].name`) : undefined;
    if (!isMap(e) || !name) throw configError(`${where}: ${key}[${i}] must be a map with a name and a ${inner}, not ${brief(e, 60)}`);
    const body = e[inner] ?? {};
    if (!isMap(body)) throw configError(`${where}: ${key}[${i}] (${JSON.stringify(name)}) ${inner} must be a map, not ${brief(body, 40)}`);
    if (!out.has(name)) out.set(name, body);
  });
  return out;
}

/** A string field; numbers and booleans are taken as written (sigs.k8s.io/yaml does so for string fields). */
function str(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw configError(`${what} must be a string, not ${brief(v, 40)}`);
}

function bool(v: unknown, what: string): boolean {
  if (v === undefined || v === null || v === false || v === "false") return false;
  if (v === true || v === "true") return true;
  throw configError(`${what} must be true or false, not ${brief(v, 40)}`);
}

function b64(s: string, what: string): string {
  const compact = s.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) throw configError(`${what} is not base64`);
  return Buffer.from(compact, "base64").toString("utf8");
}

function list(m: Map<string, unknown>): string {
  return m.size === 0 ? "none" : [...m.keys()].map((k) => JSON.stringify(k)).join(", ");
}

/** A path as the user would write it: ~/... under the home folder. */
function displayPath(p: string): string {
  const home = homedir();
  return home && home !== "/" && p.startsWith(`${home}/`) ? `~${p.slice(home.length)}` : p;
}
