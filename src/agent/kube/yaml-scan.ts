// The character level of yaml-lite: the cursor, flow collections ({...}, [...]) and quoted
// scalars, which may all span lines; and how a plain scalar resolves (YAML 1.2 core schema).

export class YamlError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "YamlError";
    this.line = line;
  }
}

export type Obj = Record<string, unknown>;
const BLOCK_SCALAR = "block scalars (| and >) are not supported; write the value on one line, in quotes";
export const REFUSED: Record<string, string> = {
  "|": BLOCK_SCALAR,
  ">": BLOCK_SCALAR,
  "&": "anchors (&name) are not supported; write the value out in full",
  "*": "aliases (*name) are not supported; write the value out in full",
  "!": "tags (!name) are not supported; remove the tag",
  "?": "complex keys (? key) are not supported",
  "@": "a plain value cannot start with '@'; quote it",
  "`": "a plain value cannot start with '`'; quote it",
};
/** Double-quoted escapes: \0 \a \b \t \<TAB> \n \v \f \r \e \<SPACE> \" \/ \\ \N \_ \L \P (and \x \u \U below). */
const ESCAPES: Record<string, string> = Object.fromEntries(
  [...'0abt\tnvfre "/\\N_LP'].map((k, i) => [k, '\0\x07\b\t\t\n\v\f\r\x1b "/\\\x85\xa0\u2028\u2029'[i]!]),
);
export const isSpace = (c: string | undefined): boolean => c === " " || c === "\t";
/** ':' that separates a key from its value: followed by a space or the end of the line. */
export const isSep = (line: string, i: number): boolean => line[i] === ":" && (i + 1 >= line.length || isSpace(line[i + 1]));

/** A position in the text (line li, column ci) and what can be read from it without knowing the block structure. */
export class Scanner {
  protected readonly lines: string[];
  protected li = 0;
  protected ci = 0;

  constructor(text: string) {
    this.lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  }

  // ----- flow context and quoted scalars (both may span lines)

  protected flow(): unknown {
    const startLine = this.li + 1;
    const open = this.char();
    const close = open === "{" ? "}" : "]";
    const obj: Obj = {};
    const arr: unknown[] = [];
    this.ci++;
    for (;;) {
      this.flowSpace(startLine, open);
      if (this.char() === close) {
        this.ci++;
        return open === "{" ? obj : arr;
      }
      if (open === "[") arr.push(this.flowItem());
      else {
        const key = this.flowItem();
        const name = typeof key === "string" ? key : JSON.stringify(key);
        if (Object.hasOwn(obj, name)) throw this.error(`duplicate key ${JSON.stringify(name)}`);
        this.flowSpace(startLine, open);
        let value: unknown = null;
        if (this.char() === ":") {
          this.ci++;
          this.flowSpace(startLine, open);
          if (this.char() !== "," && this.char() !== close) value = this.flowItem();
        }
        setKey(obj, name, value);
      }
      this.flowSpace(startLine, open);
      if (this.char() === ",") this.ci++;
      else if (this.char() !== close) throw this.error(`expected ',' or '${close}' in the collection opened on line ${startLine}`);
    }
  }

  private flowItem(): unknown {
    const c = this.char();
    if (c === "{" || c === "[") return this.flow();
    if (c === '"' || c === "'") return this.quoted(c);
    const refused = REFUSED[c];
    if (refused) throw this.error(refused);
    const line = this.line();
    let i = this.ci;
    for (; i < line.length; i++) {
      const ch = line[i]!;
      if (",[]{}".includes(ch) || (ch === "#" && isSpace(line[i - 1]))) break;
      if (ch === ":" && (i + 1 >= line.length || " \t,[]{}".includes(line[i + 1]!))) break;
    }
    const text = line.slice(this.ci, i).trim();
    if (text === "") throw this.error(`expected a value, not ${JSON.stringify(c)}`);
    this.ci = i;
    return resolvePlain(text);
  }

  /** Skip spaces, line breaks and comments inside a flow collection. */
  private flowSpace(startLine: number, open: string): void {
    for (;;) {
      while (isSpace(this.char())) this.ci++;
      if (this.char() !== "" && this.char() !== "#") return;
      this.nextLine();
      if (this.eof()) throw new YamlError(startLine, `the '${open}' opened here is never closed`);
    }
  }

  protected quoted(q: string): string {
    const startLine = this.li + 1;
    let out = "";
    let spaces = ""; // pending whitespace: dropped at a line break (folding), else kept
    this.ci++;
    for (;;) {
      const line = this.line();
      if (this.ci >= line.length) {
        let blank = 0;
        do {
          this.nextLine();
          if (this.eof()) throw new YamlError(startLine, `the ${q} string opened here is never closed`);
        } while (this.line().trim() === "" && ++blank);
        out += blank > 0 ? "\n".repeat(blank) : " ";
        spaces = "";
        this.skipSpaces();
        continue;
      }
      const ch = line[this.ci]!;
      if (ch === q && !(q === "'" && line[this.ci + 1] === "'")) {
        this.ci++;
        return out + spaces;
      }
      if (isSpace(ch)) {
        spaces += ch;
        this.ci++;
        continue;
      }
      out += spaces;
      spaces = "";
      if (q === "'" || ch !== "\\") {
        out += ch;
        this.ci += q === "'" && ch === "'" ? 2 : 1; // '' is one ' (a lone ' ended the string above)
      } else if (this.ci + 1 >= line.length) {
        this.nextLine(); // an escaped line break: joined without a space
        if (this.eof()) throw new YamlError(startLine, `the ${q} string opened here is never closed`);
        this.skipSpaces();
      } else out += this.escape(line);
    }
  }

  private escape(line: string): string {
    const e = line[this.ci + 1]!;
    const hex = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (hex > 0) {
      const digits = line.slice(this.ci + 2, this.ci + 2 + hex);
      if (!/^[0-9a-fA-F]+$/.test(digits) || digits.length !== hex)
        throw this.error(`bad escape \\${e}${digits}: expected ${hex} hex digits`);
      this.ci += 2 + hex;
      const n = Number.parseInt(digits, 16);
      return hex === 4 ? String.fromCharCode(n) : String.fromCodePoint(n);
    }
    const s = ESCAPES[e];
    if (s === undefined) throw this.error(`unknown escape \\${e} in a double-quoted string`);
    this.ci += 2;
    return s;
  }

  // ----- position

  protected line(): string {
    return this.lines[this.li] ?? "";
  }
  protected char(): string {
    return this.line()[this.ci] ?? "";
  }
  protected eof(): boolean {
    return this.li >= this.lines.length;
  }
  protected nextLine(): void {
    this.li++;
    this.ci = 0;
  }
  protected restBlank(): boolean {
    return (
      /^[ \t]*(#.*)?$/.test(this.line().slice(this.ci)) &&
      (this.ci === 0 || this.line()[this.ci] !== "#" || isSpace(this.line()[this.ci - 1]))
    );
  }
  protected skipSpaces(): void {
    while (isSpace(this.char())) this.ci++;
  }
  /** Move to the next content: past blank and comment lines; at a line's start, to its indentation (spaces only). */
  protected skipBlank(): void {
    while (!this.eof() && /^[ \t]*(#.*)?$/.test(this.line().slice(this.ci))) this.nextLine();
    if (this.eof()) return;
    if (this.ci > 0) {
      this.skipSpaces();
      return;
    }
    const line = this.line();
    while (line[this.ci] === " ") this.ci++;
    if (line[this.ci] === "\t") throw this.error("a tab in the indentation; YAML indents with spaces only");
  }
  protected dash(): boolean {
    return this.char() === "-" && (this.ci + 1 >= this.line().length || isSpace(this.line()[this.ci + 1]));
  }
  protected marker(m: string): boolean {
    const line = this.line();
    return !this.eof() && this.ci === 0 && line.startsWith(m) && (line.length === 3 || isSpace(line[3]));
  }
  protected atDocEnd(): boolean {
    return this.ci === 0 && (this.marker("---") || this.marker("..."));
  }
  protected error(msg: string): YamlError {
    return new YamlError(Math.min(this.li, this.lines.length - 1) + 1, msg);
  }
}

export function setKey(obj: Obj, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

/** YAML 1.2 core schema. */
export function resolvePlain(s: string): unknown {
  if (s === "" || s === "~" || /^(null|Null|NULL)$/.test(s)) return null;
  if (/^(true|True|TRUE)$/.test(s)) return true;
  if (/^(false|False|FALSE)$/.test(s)) return false;
  if (/^[-+]?[0-9]+$/.test(s)) return Number(s);
  if (/^0o[0-7]+$/.test(s)) return Number.parseInt(s.slice(2), 8);
  if (/^0x[0-9a-fA-F]+$/.test(s)) return Number.parseInt(s.slice(2), 16);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(s)) return Number(s);
  if (/^[-+]?\.(inf|Inf|INF)$/.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
  if (/^\.(nan|NaN|NAN)$/.test(s)) return Number.NaN;
  return s;
}
