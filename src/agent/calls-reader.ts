// The agent's side of the calls log (src/calls.ts): it makes the file, reads the
// lines calls append, counts them into the metrics, and rotates the file before
// it grows large. A call that opened the old file just before the rotation still
// lands in it; the old file is read once more a moment later, then removed.
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Metrics } from "./metrics.js";

const ROTATE_BYTES = 1 << 20;

export class CallsReader {
  private offset = 0;
  private rest = "";
  private old: { path: string; offset: number; due: number } | null = null;

  constructor(
    private readonly path: string,
    private readonly metrics: Metrics,
    /** Told each call read: its command, code, and (for a refusal with one) its container ID and note (src/calls.ts). */
    private readonly onCall?: (call: { command: string; code: string; id: string; note: string; at: number }) => void,
  ) {}

  /** Make the file (and its folder) so that calls start writing to it. */
  open(): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    if (!existsSync(this.path)) writeFileSync(this.path, "", { mode: 0o644 });
    for (const command of ["ADD", "DEL", "CHECK", "GC", "STATUS"]) {
      this.metrics.seedHistogram("podcidr_ipam_plugin_call_duration_seconds", HELP_DURATION, { command });
    }
  }

  /** Count what calls wrote since the last look. */
  poll(now = Date.now()): void {
    this.offset = this.readFrom(this.path, this.offset);
    if (this.old && now >= this.old.due) {
      this.readFrom(this.old.path, this.old.offset);
      try {
        unlinkSync(this.old.path);
      } catch {
        /* gone */
      }
      this.old = null;
    }
    if (!this.old && this.offset >= ROTATE_BYTES) {
      const oldPath = `${this.path}.old`;
      renameSync(this.path, oldPath);
      writeFileSync(this.path, "", { mode: 0o644 });
      this.old = { path: oldPath, offset: this.offset, due: now + 2000 };
      this.offset = 0;
    }
  }

  // --- internal ---

  private readFrom(path: string, offset: number): number {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return 0;
    }
    try {
      const size = fstatSync(fd).size;
      if (size < offset) offset = 0; // replaced under us
      if (size === offset) return offset;
      const buf = Buffer.alloc(size - offset);
      const n = readSync(fd, buf, 0, buf.length, offset);
      const text = this.rest + buf.toString("utf8", 0, n);
      const lines = text.split("\n");
      this.rest = lines.pop() ?? "";
      for (const line of lines) this.count(line);
      return offset + n;
    } finally {
      closeSync(fd);
    }
  }

  private count(line: string): void {
    const [at, command, code, ms, id, note] = line.split(" ");
    if (!command || code === undefined || ms === undefined) return;
    const field = (s: string | undefined): string => (s === undefined || s === "-" ? "" : s);
    this.onCall?.({ command, code, id: field(id), note: field(note), at: Number(at) });
    const result = code === "0" ? "ok" : code;
    this.metrics.counter(
      "podcidr_ipam_plugin_calls_total",
      "CNI calls of the plugin on this node, by command and result (ok or the CNI error code).",
      {
        command,
        result,
      },
    );
    const seconds = Number(ms) / 1000;
    if (Number.isFinite(seconds)) this.metrics.observe("podcidr_ipam_plugin_call_duration_seconds", HELP_DURATION, seconds, { command });
  }
}

const HELP_DURATION = "Duration of the plugin's CNI calls, from the process's start to its answer.";
