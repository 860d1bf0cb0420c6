// The agent's HTTP endpoints: /healthz (alive), /readyz (a good node file from a
// successful sync, with usable podCIDRs, and the watch connected or reconnecting
// within its backoff) and /metrics. Plus the node_exporter textfile: the metrics
// written atomically to one .prom file, no timestamps.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { type Server, createServer } from "node:http";
import { join } from "node:path";

export interface Endpoints {
  ready(): { ok: boolean; why: string };
  metrics(): Promise<string>;
}

/** Listen on "host:port" (":port" means all addresses); resolves once listening. */
export function serve(addr: string, e: Endpoints): Promise<Server> {
  const { host, port } = parseAddr(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const r = e.ready();
      res.writeHead(r.ok ? 200 : 503, { "content-type": "text/plain" }).end(`${r.why}\n`);
    } else if (path === "/metrics") {
      e.metrics().then(
        (text) => res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(text),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: /healthz, /readyz, /metrics\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`${JSON.stringify(addr)} is not host:port (e.g. 127.0.0.1:9869 or :9869)`);
  const host = m[1] ?? m[2];
  return { host: host === "" ? undefined : host, port };
}

/** Write the metrics for node_exporter's textfile collector: one file, replaced by rename, never half-written. */
export function writeTextfile(dir: string, text: string): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "podcidr_ipam.prom");
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
