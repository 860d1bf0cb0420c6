// The benchmarks seed stores through the project's own modules (the same code as the
// executable, run in process): bundle a few lines that re-export them from src/ and
// import the result.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * @param {string} work a scratch folder for the bundle
 * @param {string} contents the re-exports, with paths from the repository's root ("./src/...")
 */
export async function importSrc(work, contents) {
  const out = join(work, `src-${Math.random().toString(36).slice(2, 8)}.cjs`);
  await build({
    stdin: { contents, resolveDir: root, loader: "ts" },
    bundle: true,
    platform: "node",
    format: "cjs",
    outfile: out,
    logLevel: "error",
    define: { __VERSION__: '"bench"' },
  });
  return import(out);
}
