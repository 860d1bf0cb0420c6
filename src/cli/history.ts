// `podcidr-ipam history [ADDRESS | --container ID | --pod NS/NAME] [--since T] [--json]`:
// who held an address, which addresses a container or pod held, and when. It
// answers from what the store keeps: the events of the last 30 days, at most
// 10,000 (the oldest dropped first when a checkpoint is written), and the live
// records (a live attachment is always shown). Reads without the lock.
import { CniError } from "../errors.js";
import { parseIp } from "../ipam/cidr.js";
import type { IpamConfig } from "../ipam/config.js";
import { type HistoryEntry, readHistory } from "../store/history.js";
import { openStore } from "../store/open.js";

/** What the store keeps of the history (docs/design-log-store.md, "History"). */
export const KEPT = "the last 30 days, at most 10,000 events";

export interface HistoryQuery {
  readonly address?: string;
  readonly container?: string;
  /** "namespace/name" */
  readonly pod?: string;
  /** ms since the epoch */
  readonly since?: number;
}

export interface HistoryLine {
  readonly time: string;
  readonly event: "held" | "released";
  readonly network: string;
  readonly containerID: string;
  readonly ifname: string;
  readonly namespace: string;
  readonly pod: string;
  readonly netns: string;
  readonly addresses: readonly string[];
  /** It holds its addresses now. */
  readonly live: boolean;
}

/** The query from the command line; throws a usage error (CniError code 2) when it makes no sense. */
export function parseQuery(positional: string | undefined, o: { container?: string; pod?: string; since?: string }): HistoryQuery {
  const given = [positional, o.container, o.pod].filter((x) => x !== undefined).length;
  if (given > 1) throw usage("give one of ADDRESS, --container and --pod");
  if (positional !== undefined && !parseIp(positional)) throw usage(`${JSON.stringify(positional)} is not an IP address`);
  if (o.pod !== undefined && !/^[^/]+\/[^/]+$/.test(o.pod)) throw usage(`--pod takes NAMESPACE/NAME, got ${JSON.stringify(o.pod)}`);
  return {
    ...(positional !== undefined ? { address: canonical(positional) } : {}),
    ...(o.container !== undefined ? { container: o.container } : {}),
    ...(o.pod !== undefined ? { pod: o.pod } : {}),
    ...(o.since !== undefined ? { since: sinceOf(o.since) } : {}),
  };
}

export async function history(ipam: IpamConfig, q: HistoryQuery, log: (msg: string) => void = () => {}): Promise<HistoryLine[]> {
  const events = await readHistory(openStore(ipam, log));
  return events.filter((e) => matches(e, q)).map(line);
}

export function formatHistory(lines: readonly HistoryLine[], q: HistoryQuery): string {
  const out = lines.map(
    (l) =>
      `${l.time}  ${l.event.padEnd(8)}  ${l.addresses.join(", ")}  ${l.network}/${l.containerID}/${l.ifname}` +
      `${l.pod ? `  ${l.namespace}/${l.pod}` : ""}${l.live ? "  (holds it now)" : ""}`,
  );
  if (out.length === 0) out.push(`No events${q.since !== undefined ? ` since ${new Date(q.since).toISOString()}` : ""}.`);
  out.push(`(The store keeps ${KEPT}, and every live attachment.)`);
  return `${out.join("\n")}\n`;
}

// --- internal ---

function matches(e: HistoryEntry, q: HistoryQuery): boolean {
  if (q.since !== undefined && e.time < q.since && !e.live) return false;
  if (q.address !== undefined && !e.record.ips.some((h) => canonical(h.address) === q.address)) return false;
  if (q.container !== undefined && e.record.containerID !== q.container) return false;
  if (q.pod !== undefined && `${e.record.namespace}/${e.record.pod}` !== q.pod) return false;
  return true;
}

function line(e: HistoryEntry): HistoryLine {
  const r = e.record;
  return {
    time: new Date(e.time).toISOString(),
    event: e.kind === "put" ? "held" : "released",
    network: r.network,
    containerID: r.containerID,
    ifname: r.ifname,
    namespace: r.namespace,
    pod: r.pod,
    netns: r.netns,
    addresses: r.ips.map((h) => h.address),
    live: e.live,
  };
}

/** An address as the store writes it (fd00:0::1 and fd00::1 are one address). */
function canonical(address: string): string {
  const ip = parseIp(address);
  return ip ? `${ip.family}:${ip.value}` : address;
}

/** --since: an ISO 8601 time, or a duration back from now (90s, 30m, 12h, 7d). */
function sinceOf(text: string): number {
  const d = /^(\d+)(s|m|h|d)$/.exec(text);
  if (d) return Date.now() - Number(d[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[d[2] as "s" | "m" | "h" | "d"];
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw usage(`--since takes a time (2026-12-01T08:00:00Z) or a duration (90s, 30m, 12h, 7d), got ${JSON.stringify(text)}`);
  return t;
}

function usage(msg: string): CniError {
  return new CniError(2, msg);
}
