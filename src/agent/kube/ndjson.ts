// A watch response is newline-delimited JSON in HTTP chunks, and a chunk can end anywhere:
// inside a line, inside a multi-byte UTF-8 character. Lines are split on the byte 0x0A (which
// never occurs inside a UTF-8 sequence) and decoded only once whole.
import { KubeError } from "./errors.js";

/** Far above any node object (a busy v1 Node is ~100 KiB); a stream that sends more without a newline is broken. */
export const MAX_LINE_BYTES = 16 << 20;

export class LineSplitter {
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {}

  /** The complete lines this chunk ends (without "\n" or "\r\n"; blank lines skipped). */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const whole = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.pending = 0;
      const line = whole.toString("utf8").replace(/\r$/, "");
      if (line.trim() !== "") lines.push(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.pending += chunk.length - start;
      if (this.pending > this.maxLineBytes) {
        throw new KubeError(`a watch event is longer than ${this.maxLineBytes} bytes without a newline`, { reason: "BadResponse" });
      }
      this.parts.push(chunk.subarray(start));
    }
    return lines;
  }

  /** What is left when the stream ends: an unterminated last line, or undefined. */
  flush(): string | undefined {
    const rest = Buffer.concat(this.parts).toString("utf8").trim();
    this.parts = [];
    this.pending = 0;
    return rest === "" ? undefined : rest;
  }
}
