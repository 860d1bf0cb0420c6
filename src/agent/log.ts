// The agent's log: one line per event on stderr, as text or (--log-format json) JSON.
export type LogFormat = "text" | "json";

export type Log = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export function makeLog(format: LogFormat, write: (line: string) => void, now: () => Date = () => new Date()): Log {
  return (level, msg, fields = {}) => {
    const time = now().toISOString();
    if (format === "json") {
      write(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
      return;
    }
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(" ");
    write(`${time} ${level} ${msg}${extra ? ` ${extra}` : ""}\n`);
  };
}
