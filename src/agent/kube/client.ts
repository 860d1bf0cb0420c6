// Requests to the API server over node:https: one TLS context (CA, client certificate) built
// once, the bearer token asked of its source per request, keep-alive off (the agent makes a
// request every few minutes; a fresh connection each time never meets a socket the server
// closed meanwhile). A 401 re-reads a token file and retries once. Any other status >= 300
// is a KubeError carrying the status, the Status object's reason and message, and Retry-After.
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import https from "node:https";
import { type SecureContext, createSecureContext } from "node:tls";
import { errno } from "../../errors.js";
import type { KubeConfig } from "./credentials.js";
import { KubeError, configError } from "./errors.js";
import { LineSplitter } from "./ndjson.js";
import { type ApiCounters, countError, readBody, statusError } from "./response.js";

export type { ApiCounters } from "./response.js";
export { countError } from "./response.js";

export interface RequestOptions {
  /** Sent as JSON unless a string. */
  body?: unknown;
  /** Default application/json. */
  accept?: string;
  /** The body's type (default application/json; a PATCH names its kind, e.g. application/merge-patch+json). */
  contentType?: string;
  /** For the response headers, and again for the body (default 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface KubeResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface StreamOptions {
  /** No byte for this long and the stream is taken for dead (a half-open connection looks like a quiet one). */
  idleTimeoutMs: number;
  /** For the response headers: connect, TLS and the server's answer (default 30 s). */
  headersTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called once the server has answered 200. */
  onOpen?(): void;
  /** Each line of the body; a throw ends the stream with that error. */
  onLine(line: string): void;
}

/** How a 200 stream ended: the server closed it, it went silent, we aborted it, or it broke (or onLine threw). */
export type StreamEnd = { end: "closed" | "idle" | "aborted" } | { end: "error"; error: KubeError };

/** The interface the watcher needs (KubeClient, or a fake in tests). */
export interface KubeApi {
  readonly counters: ApiCounters;
  request(method: string, path: string, opts?: RequestOptions): Promise<KubeResponse>;
  stream(path: string, opts: StreamOptions): Promise<StreamEnd>;
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|HOSTNAME|ALTNAME/;

export class KubeClient implements KubeApi {
  readonly counters: ApiCounters = { requests: 0, errors: {} };
  private readonly host: string;
  private readonly port: number;
  private readonly prefix: string;
  private readonly tls: SecureContext;
  private readonly userAgent: string;

  constructor(
    readonly config: KubeConfig,
    opts: { userAgent?: string } = {},
  ) {
    const url = new URL(config.server);
    this.host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = Number(url.port || 443);
    this.prefix = url.pathname.replace(/\/+$/, "");
    this.userAgent = opts.userAgent ?? "podcidr-ipam";
    try {
      this.tls = createSecureContext({ ca: config.ca, cert: config.clientCert, key: config.clientKey });
    } catch (e) {
      throw configError(`${config.source}: the CA or client certificate/key cannot be used: ${(e as Error).message}`);
    }
  }

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<KubeResponse> {
    const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    for (let attempt = 0; ; attempt++) {
      const res = await this.open(method, path, { ...opts, body, timeoutMs });
      const text = await this.body(res, method, path, timeoutMs, opts.signal);
      const status = res.statusCode ?? 0;
      if (status === 401 && attempt === 0 && this.config.auth?.invalidate()) continue;
      if (status >= 200 && status < 300) return { status, headers: res.headers, body: text };
      throw statusError(this.counters, `${method} ${path}`, status, res.headers, text);
    }
  }

  async stream(path: string, opts: StreamOptions): Promise<StreamEnd> {
    const timeoutMs = opts.headersTimeoutMs ?? 30_000;
    let res: IncomingMessage;
    for (let attempt = 0; ; attempt++) {
      res = await this.open("GET", path, { timeoutMs, signal: opts.signal });
      if (res.statusCode === 200) break;
      const text = await this.body(res, "GET", path, timeoutMs, opts.signal);
      if (res.statusCode === 401 && attempt === 0 && this.config.auth?.invalidate()) continue;
      throw statusError(this.counters, `GET ${path}`, res.statusCode ?? 0, res.headers, text);
    }
    try {
      opts.onOpen?.();
    } catch (e) {
      res.destroy();
      throw e;
    }
    return new Promise<StreamEnd>((resolve) => {
      const splitter = new LineSplitter();
      let done = false;
      const finish = (end: StreamEnd): void => {
        if (done) return;
        done = true;
        clearTimeout(idle);
        opts.signal?.removeEventListener("abort", onAbort);
        if (end.end !== "closed") res.destroy();
        resolve(end);
      };
      const onAbort = (): void => finish({ end: "aborted" });
      const idle = setTimeout(() => finish({ end: "idle" }), opts.idleTimeoutMs);
      const feed = (lines: string[]): void => {
        try {
          for (const line of lines) if (!done) opts.onLine(line);
        } catch (e) {
          finish({ end: "error", error: e instanceof KubeError ? e : new KubeError(String(e), { reason: "BadResponse", cause: e }) });
        }
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (opts.signal?.aborted) onAbort();
      res.on("data", (chunk: Buffer) => {
        if (done) return;
        idle.refresh();
        try {
          feed(splitter.push(chunk));
        } catch (e) {
          finish({ end: "error", error: e as KubeError });
        }
      });
      res.on("end", () => {
        const rest = splitter.flush();
        if (rest !== undefined) feed([rest]);
        finish({ end: "closed" });
      });
      const broken = (e?: Error): void =>
        finish(
          opts.signal?.aborted
            ? { end: "aborted" }
            : { end: "error", error: this.networkError("GET", path, e ?? new Error("connection closed mid-stream")) },
        );
      res.on("error", broken);
      res.on("close", () => broken());
    });
  }

  // --- internal ---

  private open(
    method: string,
    path: string,
    o: { body?: string; accept?: string; contentType?: string; timeoutMs: number; signal?: AbortSignal },
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      this.counters.requests++;
      const headers: Record<string, string> = { Accept: o.accept ?? "application/json", "User-Agent": this.userAgent };
      try {
        if (this.config.auth) headers.Authorization = `Bearer ${this.config.auth.token()}`;
      } catch (e) {
        return reject(e);
      }
      if (o.body !== undefined) headers["Content-Type"] = o.contentType ?? "application/json";
      const req = https.request({
        host: this.host,
        port: this.port,
        path: this.prefix + path,
        method,
        headers,
        agent: false,
        secureContext: this.tls,
        rejectUnauthorized: !this.config.insecureSkipTlsVerify,
        ...(this.config.tlsServerName ? { servername: this.config.tlsServerName } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      } as https.RequestOptions);
      const timer = setTimeout(() => {
        this.count("timeout");
        req.destroy(new KubeError(`${method} ${path}: no response within ${o.timeoutMs} ms`, { reason: "Timeout" }));
      }, o.timeoutMs);
      // TCP keepalive finds a peer that is gone (not one that is hung: the idle timer is for that).
      req.on("socket", (s) => s.setKeepAlive(true, 30_000));
      req.on("response", (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      req.on("error", (e) => {
        clearTimeout(timer);
        reject(this.networkError(method, path, e, o.signal));
      });
      req.end(o.body);
    });
  }

  private body(res: IncomingMessage, method: string, path: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    return readBody(res, `${method} ${path}`, timeoutMs, this.counters).catch((e: unknown) => {
      throw this.networkError(method, path, e, signal);
    });
  }

  private networkError(method: string, path: string, e: unknown, signal?: AbortSignal): KubeError {
    if (e instanceof KubeError) return e;
    if (signal?.aborted) return new KubeError(`${method} ${path}: aborted`, { reason: "Aborted", cause: e });
    this.count("network");
    const code = errno(e) ?? "NetworkError";
    const details = TLS_CODES.test(code) ? `the server's certificate does not check out against the CA of ${this.config.source}` : "";
    return new KubeError(`${method} ${this.config.server}${path}: ${(e as Error).message ?? String(e)}`, {
      reason: code,
      details,
      cause: e,
    });
  }

  private count(key: string): void {
    countError(this.counters, key);
  }
}
