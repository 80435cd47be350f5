// Bundles the QR code generator of the paywall page (npm `lean-qr`, pinned in package.json) into
// src/paywall/lean-qr.js, a plain script defining the global `LeanQR` = {generate, correction,
// toSvg}, which src/paywall/mod.rs inlines in the page before page.js. Run after changing the
// lean-qr version: `node scripts/vendor-qr.mjs`. tests/paywall.test.mjs fails if the committed
// file differs from what this prints, so it cannot drift from the pinned package.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TARGET = path.join(ROOT, 'src/paywall/lean-qr.js');

/** The file's text: a header naming the package, its version and licence, then the bundle. */
export function bundle() {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'node_modules/lean-qr/package.json'), 'utf8'));
  const out = buildSync({
    stdin: { contents: "export { generate, correction } from 'lean-qr/nano';\nexport { toSvg } from 'lean-qr/extras/svg';\n", resolveDir: ROOT },
    bundle: true,
    minify: true,
    format: 'iife',
    globalName: 'LeanQR',
    target: 'es2020',
    write: false,
    legalComments: 'none',
  });
  const header = `// lean-qr ${pkg.version} (${pkg.license}, https://github.com/davidje13/lean-qr), nano build + SVG extra, bundled by scripts/vendor-qr.mjs.\n`;
  return header + out.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(TARGET, bundle());
  console.log(`wrote ${path.relative(ROOT, TARGET)}`);
}
