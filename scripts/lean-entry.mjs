// Replaces the default export of a worker-build 0.8.7 bundle (`<dir>/index.js`) with a lean
// `fetch` entry that keeps worker-build's panic recovery.
//
// worker-build exports a `WorkerEntrypoint` subclass wrapped in two `Proxy` layers: per request
// the runtime constructs the class, the `construct` trap wraps the instance in a proxy, the `get`
// trap wraps `fetch` in a third proxy, and its `apply` trap checks for a trapped panic before
// calling our wasm export. That is about 10 µs of CPU per request (`node bench/profile.mjs
// challenge`). The lean entry is a plain module-worker object doing the same two things:
// re-instantiating the wasm if the previous request trapped (worker-build's own check, which
// resets wasm-bindgen's state), and marking the instance as broken if this call traps. A Rust
// panic marks it too, through wasm-bindgen's abort handler, which is what covers a panic after
// I/O (tests/panic.test.mjs proves both on a build patched by this script).
//
// Only the default export changes; the Durable Object class keeps worker-build's wrapper. The
// bundle is minified, so the three functions are found by shape; if any shape is missing (another
// worker-build version), this fails the build rather than ship an unknown entry.
//
// Usage: node scripts/lean-entry.mjs build
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const file = path.join(process.argv[2] ?? 'build', 'index.js');
let src = readFileSync(file, 'utf8');
const id = '[A-Za-z_$][A-Za-z0-9_$]*';
const find = (what, re) => {
  const m = re.exec(src);
  if (!m) {
    console.error(`lean-entry: ${what} not found in ${file}: is worker-build still 0.8.7?`);
    process.exit(1);
  }
  return m;
};
if (src.includes('x402LeanEntry')) process.exit(0); // already patched
const wasmFetch = find('the wasm fetch export', new RegExp(`(${id})\\.prototype\\.fetch=function\\((${id})\\)\\{return (${id})\\.call\\(this,\\2,this\\.env,this\\.ctx\\)\\}`))[3];
const reinit = find('the re-instantiation check', new RegExp(`function (${id})\\(\\)\\{(${id})\\.criticalError&&\\(console\\.log\\("Reinitializing Wasm application"\\)`))[1];
const markTrap = find('the trap marker', new RegExp(`function (${id})\\((${id})\\)\\{\\2 instanceof WebAssembly\\.RuntimeError&&`))[1];
const exported = find('the default export', new RegExp(`export\\{([^}]*?)(${id}) as default\\}`));
const entry = `var x402LeanEntry={fetch(q,e,c){${reinit}();try{return ${wasmFetch}(q,e,c)}catch(x){throw ${markTrap}(x),x}}};`;
src = src.slice(0, exported.index) + entry + `export{${exported[1]}x402LeanEntry as default}` + src.slice(exported.index + exported[0].length);
writeFileSync(file, src);
