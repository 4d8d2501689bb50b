// Runs the official mcpb library's validateManifest -- the exact function behind `mcpb validate <file>`,
// which is `process.exit(validateManifest(path) ? 0 : 1)` -- over many files in one node process, because
// starting the CLI once per manifest costs ~0.4 s each.
// Usage: node mcpb_validate_many.mjs <path to @anthropic-ai/mcpb package dir> <manifest.json>...
// Prints one JSON line per file: {"file": ..., "ok": bool, "output": "..."}.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [packageDir, ...files] = process.argv.slice(2);
const { validateManifest } = await import(pathToFileURL(join(packageDir, "dist", "node.js")).href);
const results = [];
const { log, error } = console;
for (const file of files) {
  const lines = [];
  console.log = (...args) => lines.push(args.join(" "));
  console.error = (...args) => lines.push(args.join(" "));
  let ok;
  try {
    ok = validateManifest(file);
  } finally {
    console.log = log;
    console.error = error;
  }
  results.push({ file, ok, output: lines.join("\n") });
}
for (const result of results) process.stdout.write(JSON.stringify(result) + "\n");
