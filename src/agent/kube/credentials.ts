// The shape of a resolved API configuration, and the pieces both sources use: token
// sources (a projected ServiceAccount token rotates, so it is re-read) and PEM checks.
import { readFileSync } from "node:fs";
import { errno } from "../../errors.js";
import { configError } from "./errors.js";

/** client-go's cached file token source re-reads the file after a minute (transport/token_source.go). */
export const TOKEN_MAX_AGE_MS = 60_000;

/** A bearer token that may change: a projected ServiceAccount token is rotated by the kubelet. */
export interface TokenSource {
  /** The token to send now. A file is re-read when the last read is older than its max age. */
  token(): string;
  /** After a 401: the next token() re-reads the file. False when there is nothing to re-read (a fixed token). */
  invalidate(): boolean;
  /** For messages: "token file /var/run/..." or "the token of user \"x\"". */
  readonly origin: string;
}

/** How to reach and authenticate to one API server. */
export interface KubeConfig {
  /** "https://host:port", plus a path prefix if the kubeconfig's server has one; no trailing "/". */
  readonly server: string;
  /** Where these settings come from, for messages. */
  readonly source: string;
  /** PEM of the CA bundle to trust; undefined: Node's default roots. */
  readonly ca?: string;
  readonly insecureSkipTlsVerify: boolean;
  /** Name to verify the server's certificate against (kubeconfig tls-server-name). */
  readonly tlsServerName?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
  readonly auth?: TokenSource;
  /** Said once at start (insecure-skip-tls-verify, anonymous, KUBECONFIG lists several files). */
  readonly warnings: readonly string[];
}

export interface LoadOptions {
  /** --kubeconfig FILE */
  kubeconfig?: string;
  /** --context NAME (kubeconfig only) */
  context?: string;
  env?: Record<string, string | undefined>;
  /** In cluster: the token file (ca.crt is read from beside it). */
  tokenFile?: string;
  tokenMaxAgeMs?: number;
  now?: () => number;
}

/**
 * A token read from a file, re-read when the last read is older than tokenMaxAgeMs and
 * after invalidate(). The first read must succeed (unless there is a `fallback` token);
 * a later failed read keeps the last token (the kubelet swaps the file atomically, so
 * that is a passing state), and is tried again at the next call.
 */
export function fileTokenSource(path: string, what: string, opts: LoadOptions & { fallback?: string } = {}): TokenSource {
  const maxAge = opts.tokenMaxAgeMs ?? TOKEN_MAX_AGE_MS;
  const now = opts.now ?? Date.now;
  let cached = opts.fallback;
  let readAt = Number.NEGATIVE_INFINITY;
  const read = (): string => {
    let text: string;
    try {
      text = readFileSync(path, "utf8").trim();
    } catch (e) {
      if (cached !== undefined) return cached;
      throw configError(`${what} ${path} cannot be read: ${errno(e) ?? (e as Error).message}`);
    }
    if (text === "") {
      if (cached !== undefined) return cached;
      throw configError(`${what} ${path} is empty`);
    }
    cached = text;
    readAt = now();
    return text;
  };
  read();
  return {
    origin: `${what} ${path}`,
    token: () => (now() - readAt >= maxAge ? read() : (cached as string)),
    invalidate: () => {
      readAt = Number.NEGATIVE_INFINITY;
      return true;
    },
  };
}

/** A token that never changes (a kubeconfig's `token`). */
export function fixedTokenSource(token: string, origin: string): TokenSource {
  return { origin, token: () => token, invalidate: () => false };
}

/** Read a PEM file and check it holds a `label` block (CERTIFICATE, PRIVATE KEY). */
export function readPemFile(path: string, label: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw configError(`${what} ${path} cannot be read: ${errno(e) ?? (e as Error).message}`);
  }
  return checkPem(text, label, `${what} ${path}`);
}

/** `text` if it holds a PEM block whose label ends with `label`, else a BadConfig error about `what`. */
export function checkPem(text: string, label: string, what: string): string {
  if (!new RegExp(`-----BEGIN [A-Z ]*${label}-----`).test(text))
    throw configError(`${what} is not PEM (no "-----BEGIN ...${label}-----" line)`);
  return text;
}
