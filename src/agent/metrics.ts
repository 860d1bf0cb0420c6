// The agent's metrics in Prometheus's text format (version 0.0.4): counters and
// gauges it keeps itself, the store's occupancy per network and podCIDR (read
// without the lock at each scrape), and the plugin calls it counts from the
// calls log. Names follow Prometheus conventions: the podcidr_ipam_ prefix,
// _total counters, base units (seconds, addresses).

/** Plugin call latency buckets, seconds (a call is tens of milliseconds; a slow disk makes it seconds). */
export const CALL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = Record<string, string>;

interface Family {
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly samples: Map<string, { labels: Labels; value: number }>;
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  counter(name: string, help: string, labels: Labels = {}, by = 1): void {
    const s = this.sample(name, help, "counter", labels);
    s.value += by;
  }

  /** A counter kept elsewhere (the API client's): its current total. */
  setCounter(name: string, help: string, value: number, labels: Labels = {}): void {
    this.sample(name, help, "counter", labels).value = value;
  }

  gauge(name: string, help: string, value: number, labels: Labels = {}): void {
    this.sample(name, help, "gauge", labels).value = value;
  }

  /** Forget every sample of a gauge family (one that is recomputed whole, like the store's occupancy). */
  clear(name: string): void {
    this.families.get(name)?.samples.clear();
  }

  /** One observation of a histogram: its _bucket, _sum and _count samples. */
  observe(name: string, help: string, seconds: number, labels: Labels = {}): void {
    for (const le of CALL_BUCKETS)
      if (seconds <= le) this.sample(`${name}_bucket`, help, "histogram", { ...labels, le: String(le) }).value++;
    this.sample(`${name}_bucket`, help, "histogram", { ...labels, le: "+Inf" }).value++;
    this.sample(`${name}_sum`, help, "histogram", labels).value += seconds;
    this.sample(`${name}_count`, help, "histogram", labels).value++;
  }

  /** Ensure every bucket of a histogram series exists (so a series shows before its first observation). */
  seedHistogram(name: string, help: string, labels: Labels = {}): void {
    for (const le of [...CALL_BUCKETS.map(String), "+Inf"]) this.sample(`${name}_bucket`, help, "histogram", { ...labels, le });
    this.sample(`${name}_sum`, help, "histogram", labels);
    this.sample(`${name}_count`, help, "histogram", labels);
  }

  /** The exposition: HELP and TYPE once per family, then its samples; no timestamps (the textfile collector refuses them). */
  render(): string {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const [key, f] of this.families) {
      const base = f.type === "histogram" ? key.replace(/_(bucket|sum|count)$/, "") : key;
      if (!seen.has(base)) {
        out.push(`# HELP ${base} ${f.help}`, `# TYPE ${base} ${f.type}`);
        seen.add(base);
      }
      for (const { labels, value } of f.samples.values()) out.push(`${key}${labelText(labels)} ${formatValue(value)}`);
    }
    return `${out.join("\n")}\n`;
  }

  // --- internal ---

  private sample(name: string, help: string, type: Family["type"], labels: Labels): { labels: Labels; value: number } {
    let f = this.families.get(name);
    if (!f) {
      f = { help, type, samples: new Map() };
      this.families.set(name, f);
    }
    const key = labelText(labels);
    let s = f.samples.get(key);
    if (!s) {
      s = { labels, value: 0 };
      f.samples.set(key, s);
    }
    return s;
  }
}

// --- internal ---

function labelText(labels: Labels): string {
  const e = Object.entries(labels);
  if (e.length === 0) return "";
  return `{${e.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`).join(",")}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return Number.isInteger(v) ? String(v) : v.toPrecision(9).replace(/\.?0+$/, "");
}
