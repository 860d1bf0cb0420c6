// A YAML subset, enough for kubeconfig files as kubectl, kind, kubeadm and the cloud CLIs
// write them: block maps and lists (also "indentless" lists under a key, and "- key: v"
// items), flow collections ({...}, [...], so JSON documents too), plain, single- and
// double-quoted scalars (a quoted or plain scalar may fold over several lines), comments,
// one document with optional "---"/"..." markers. Plain scalars resolve by YAML 1.2's core
// schema (null, true/false, numbers, else strings). Refused, with the line number: block
// scalars (| >), anchors, aliases, tags, complex keys (?), tabs in indentation, a second document.
// This file is the block structure; yaml-scan.ts the characters.
import { type Obj, REFUSED, Scanner, YamlError, isSep, isSpace, resolvePlain, setKey } from "./yaml-scan.js";

export { YamlError };

/** Parse one YAML document (of the subset above; JSON is YAML) into plain objects, arrays and scalars. */
export function parseYaml(text: string): unknown {
  return new Parser(text).document();
}

// --- internal ---

class Parser extends Scanner {
  document(): unknown {
    this.skipBlank();
    while (!this.eof() && this.ci === 0 && this.line().startsWith("%")) {
      this.nextLine();
      this.skipBlank();
    }
    if (this.marker("---")) {
      this.ci = 3;
      this.skipBlank();
    }
    const value = this.eof() || this.atDocEnd() ? null : this.blockNode(0);
    this.skipBlank();
    if (this.marker("...")) {
      this.nextLine();
      this.skipBlank();
    }
    if (this.marker("---")) throw this.error("a second document ('---') is not supported; a kubeconfig is one document");
    if (!this.eof()) throw this.error(`unexpected ${JSON.stringify(this.line().trim().slice(0, 40))} (check the indentation)`);
    return value;
  }

  // ----- block context

  private blockNode(minIndent: number): unknown {
    this.skipBlank();
    if (this.eof() || this.ci < minIndent || this.atDocEnd()) return null;
    if (this.dash()) return this.blockSeq(this.ci);
    if (this.keyAt() !== null) return this.blockMap(this.ci);
    return this.inlineValue(minIndent);
  }

  private blockMap(ind: number): Obj {
    const obj: Obj = {};
    for (;;) {
      this.skipBlank();
      if (this.eof() || this.ci < ind || this.atDocEnd()) return obj;
      if (this.ci > ind) throw this.error("unexpected indentation (deeper than the keys above it)");
      const key = this.keyAt();
      if (key === null) throw this.error(this.dash() ? "a list item among map keys" : "expected a 'key: value' line");
      if (Object.hasOwn(obj, key.name)) throw this.error(`duplicate key ${JSON.stringify(key.name)}`);
      this.ci = key.after;
      setKey(obj, key.name, this.mapValue(ind));
    }
  }

  private mapValue(ind: number): unknown {
    if (!this.restBlank()) {
      this.skipSpaces();
      if (this.dash()) throw this.error("a list cannot start on its key's line; put '- ' items on the lines below");
      return this.inlineValue(ind + 1);
    }
    this.nextLine();
    this.skipBlank();
    if (this.eof() || this.atDocEnd()) return null;
    if (this.ci > ind) return this.blockNode(ind + 1);
    return this.ci === ind && this.dash() ? this.blockSeq(ind) : null;
  }

  private blockSeq(ind: number): unknown[] {
    const arr: unknown[] = [];
    for (;;) {
      this.skipBlank();
      if (this.eof() || this.ci < ind || this.atDocEnd()) return arr;
      if (this.ci > ind) throw this.error("unexpected indentation (deeper than the '- ' items above it)");
      if (!this.dash()) return arr;
      this.ci += 1;
      if (this.restBlank()) {
        this.nextLine();
        this.skipBlank();
        arr.push(!this.eof() && this.ci > ind ? this.blockNode(ind + 1) : null);
      } else {
        this.skipSpaces();
        arr.push(this.blockNode(ind + 1));
      }
    }
  }

  /** A value that starts on this line: flow, quoted or plain (a plain one continues on lines indented >= minIndent). */
  private inlineValue(minIndent: number): unknown {
    const c = this.char();
    const refused = REFUSED[c];
    if (refused) throw this.error(refused);
    let v: unknown;
    if (c === "{" || c === "[") v = this.flow();
    else if (c === '"' || c === "'") v = this.quoted(c);
    else return this.plain(minIndent);
    this.skipSpaces();
    if (!this.restBlank()) throw this.error(`unexpected ${JSON.stringify(this.line().slice(this.ci, this.ci + 40))} after the value`);
    this.nextLine();
    return v;
  }

  private plain(minIndent: number): unknown {
    let { text, comment } = this.plainLine();
    this.nextLine();
    let breaks = 0;
    while (!comment && !this.eof()) {
      const line = this.line();
      const indent = line.length - line.trimStart().length;
      if (indent === line.length) {
        breaks++;
        this.li++;
        continue;
      }
      if (indent < minIndent || line[indent] === "#" || (indent === 0 && (this.marker("---") || this.marker("...")))) break;
      this.ci = indent;
      const more = this.plainLine();
      text += (breaks > 0 ? "\n".repeat(breaks) : " ") + more.text;
      comment = more.comment;
      breaks = 0;
      this.nextLine();
    }
    return resolvePlain(text);
  }

  /** The plain text from here to the end of the line or a " #" comment. */
  private plainLine(): { text: string; comment: boolean } {
    const line = this.line();
    for (let i = this.ci; i < line.length; i++) {
      if (line[i] === "#" && isSpace(line[i - 1])) return { text: line.slice(this.ci, i).trim(), comment: true };
      if (isSep(line, i)) throw this.error("a plain value cannot contain ': '; quote the value");
    }
    return { text: line.slice(this.ci).trim(), comment: false };
  }

  /** A map key starting here ("name:" or a quoted key on one line), and where its value starts. */
  private keyAt(): { name: string; after: number } | null {
    const line = this.line();
    const c = this.char();
    if (c === '"' || c === "'") {
      const [li, ci] = [this.li, this.ci];
      try {
        const name = this.quoted(c);
        let i = this.ci;
        while (isSpace(line[i])) i++;
        return this.li === li && line[i] === ":" ? { name, after: i + 1 } : null;
      } catch {
        return null;
      } finally {
        [this.li, this.ci] = [li, ci];
      }
    }
    if (c === "" || "{[&*!|>?@`#".includes(c)) return null;
    for (let i = this.ci; i < line.length; i++) {
      if (line[i] === "#" && isSpace(line[i - 1])) return null;
      if (isSep(line, i)) return { name: line.slice(this.ci, i).trimEnd(), after: i + 1 };
    }
    return null;
  }
}
