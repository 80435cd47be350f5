#!/usr/bin/env node
// Writes the figures of the current build into docs/benchmarks.md and README.md, so that no
// figure is typed by hand. Called by scripts/figures.sh, which runs the measurements; this file
// only reads their outputs and rewrites the blocks between the markers
//   <!-- figures:begin --> … <!-- figures:end -->                     (docs/benchmarks.md)
//   <!-- figures:headline:begin --> … <!-- figures:headline:end -->   (README.md)
//
//   node scripts/figures.mjs --size FILE --report FILE [--timings FILE] [--commit SHA] [--check]
//
// --size: what scripts/size.sh printed. --report: bench/run.mjs's markdown report
// (bench/.build/report.md). --timings: JSON {"demoSeconds": n, "freshCloneSeconds": n} (each
// optional). --check: print the blocks instead of writing the files.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The numbers of a text, in order, commas removed: "1,272 req/s (2.5×)" → [1272, 2.5]. */
export function numbers(text) {
  return [...String(text).matchAll(/-?\d[\d,]*(?:\.\d+)?/g)].map((m) => Number(m[0].replace(/,/g, '')));
}

/** scripts/size.sh's output → { wasmRaw, wasmGzip, pageRaw, pageGzip } in bytes. */
export function parseSize(text) {
  const line = (prefix) => {
    const l = text.split('\n').find((s) => s.startsWith(prefix));
    if (!l) throw new Error(`size: no line starting with "${prefix}"`);
    const raw = /raw (\d+) bytes/.exec(l);
    const gz = /gzip -9 (\d+) bytes/.exec(l);
    if (!raw || !gz) throw new Error(`size: cannot read "${l}"`);
    return [Number(raw[1]), Number(gz[1])];
  };
  const [wasmRaw, wasmGzip] = line('release wasm:');
  const [pageRaw, pageGzip] = line('paywall page:');
  return { wasmRaw, wasmGzip, pageRaw, pageGzip };
}

/** bench/run.mjs's report → { machine, table (its markdown lines), rows: measure → cells }. */
export function parseReport(text) {
  const lines = text.trim().split('\n');
  const machine = lines.find((l) => l.startsWith('Machine:')) ?? '';
  const table = lines.filter((l) => l.startsWith('|'));
  const rows = new Map();
  for (const l of table.slice(2)) {
    const cells = l.split('|').slice(1, -1).map((c) => c.trim());
    rows.set(cells[0], cells.slice(1));
  }
  return { machine, table, rows };
}

/** The cells of the report row whose measure starts with `prefix`. */
function row(rows, prefix) {
  for (const [measure, cells] of rows) if (measure.startsWith(prefix)) return cells;
  throw new Error(`report: no row "${prefix}"`);
}

/** "wasm in V8 135.8 µs; native 62.5 µs (…)" → { wasm: 135.8, native: 62.5 }, µs. */
function verifyTimes(cell) {
  const m = /wasm in V8 ([\d.,]+) µs; native ([\d.,]+) µs/.exec(cell);
  if (!m) throw new Error(`report: cannot read the verification times in "${cell}"`);
  return { wasm: numbers(m[1])[0], native: numbers(m[2])[0] };
}

const fmt = (n, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const verdict = (ok) => (ok ? 'met' : '**not met**');

/** The targets the project set itself, each judged from this run's figures. */
export function targets(size, rows) {
  const out = [];
  const [oTrips, pTrips] = row(rows, '(b) facilitator round trips per paid request, 0 ms').map((c) => numbers(c)[0]);
  out.push(['one facilitator round trip per paid request for a payer in good standing (the peer: two)', `${verdict(oTrips < 1.1)}: ${fmt(oTrips, 2)} against ${fmt(pTrips, 2)}`]);
  for (const d of [50, 0]) {
    const [o, p, ratio] = row(rows, `(b) paid request, facilitator ${d} ms, throughput`);
    const [o50, p50] = row(rows, `(b) paid request, facilitator ${d} ms, p50`).map((c) => numbers(c)[0]);
    out.push([`paid requests ahead of the peer at ${d} ms facilitator delay`, `${verdict(numbers(ratio)[0] >= 1)}: ${o} against ${p} (${ratio}); p50 ${fmt(o50, 1)} against ${fmt(p50, 1)} ms`]);
  }
  {
    // Reports from before the metered rows (m) existed lack them.
    const m = '(m) metered paid request (upto, Permit2), facilitator 50 ms';
    const metered = '`@x402/hono` with `upto`: metered paid requests at least the peer\'s throughput at 50 ms facilitator delay';
    if ([...rows.keys()].some((k) => k.startsWith(`${m}, throughput`))) {
      const [o, p, ratio] = row(rows, `${m}, throughput`);
      const [o50, p50] = row(rows, `${m}, p50`).map((c) => numbers(c)[0]);
      out.push([metered, `${verdict(numbers(ratio)[0] >= 1)}: ${o} against ${p} (${ratio}); p50 ${fmt(o50, 1)} against ${fmt(p50, 1)} ms`]);
    } else {
      out.push([metered, 'not in this report (it predates the metered rows)']);
    }
  }
  {
    const t = '(t) paid MCP tool call, facilitator 50 ms';
    const mcp = 'agents `withX402`/`paidTool`: a paid MCP tool call at least its throughput and p50 at 50 ms facilitator delay';
    if ([...rows.keys()].some((k) => k.startsWith(`${t}, throughput`))) {
      const [o, p, ratio] = row(rows, `${t}, throughput`);
      const [o50, p50] = row(rows, `${t}, p50`).map((c) => numbers(c)[0]);
      out.push([mcp, `${verdict(numbers(ratio)[0] >= 1 && o50 <= p50)}: ${o} against ${p} (${ratio}); p50 ${fmt(o50, 1)} against ${fmt(p50, 1)} ms`]);
    } else {
      out.push([mcp, 'not in this report (it predates the MCP rows)']);
    }
  }
  if ([...rows.keys()].some((k) => k.startsWith('(a) 402 challenge (shipped default'))) {
    const [co, cp, cr] = row(rows, '(a) 402 challenge (shipped default, DECISION_LOG = "payments"), throughput');
    const [lo, , lr] = row(rows, '(a) 402 challenge with DECISION_LOG = "all" (a log line per challenge), throughput');
    out.push(['402 challenge throughput at least the peer\'s with the shipped configuration', `${verdict(numbers(cr)[0] >= 1)} (${co} against ${cp}, ${cr}); with \`DECISION_LOG = "all"\`: ${lo} (${lr})`]);
  } else {
    // Reports from before DECISION_LOG defaulted to "payments".
    const [qo, qp, qr] = row(rows, '(a) 402 challenge with DECISION_LOG = "payments", throughput');
    const [co, cp, cr] = row(rows, '(a) 402 challenge, throughput');
    out.push(['402 challenge throughput at least the peer\'s', `with \`DECISION_LOG = "payments"\`: ${verdict(numbers(qr)[0] >= 1)} (${qo} against ${qp}, ${qr}); with the then default \`all\`: ${verdict(numbers(cr)[0] >= 1)} (${co} against ${cp}, ${cr})`]);
  }
  const free = row(rows, 'unpriced pass-through');
  const fr = numbers(free[2])[0];
  out.push(['unpriced pass-through within 10 % of a plain JS `fetch` proxy', `${verdict(fr >= 0.9)}: ${fr}× the proxy's throughput`]);
  const cdp = /([\d.,-]+) µs per signed call/.exec(row(rows, '(b) paid request, 0 ms, facilitator auth by CDP JWT')[0]);
  out.push(['CDP JWT authentication costs little per facilitator call', `${cdp ? `${cdp[1]} µs of workerd CPU per signed call (ES256 through WebCrypto) in this run; single runs vary by tens of µs` : 'not in the report'}`]);
  const [fo, fp] = row(rows, 'fresh isolate: first response').map((c) => numbers(c)[0]);
  out.push(['a fresh isolate\'s first response no slower than the peer\'s', `${fo <= fp ? 'met' : fo <= fp * 1.05 ? 'met within 5 %' : '**not met**'}: ${fmt(fo, 1)} against ${fmt(fp, 1)} ms`]);
  const verify = row(rows, 'EIP-3009 verify');
  const { wasm, native } = verifyTimes(verify[0]);
  const viem = numbers(verify[1]).at(-1);
  out.push(['EIP-3009 verification in wasm within 2× native', `${verdict(wasm <= 2 * native)}: ${fmt(wasm / native, 2)}× (${fmt(wasm, 1)} against ${fmt(native, 1)} µs)`]);
  out.push(['verification faster than viem in the same V8', `${verdict(viem > wasm)}: ${fmt(viem / wasm, 1)}×`]);
  out.push(['release wasm ≤ 250 KB gzip', `${verdict(size.wasmGzip <= 250_000)}: ${fmt(size.wasmGzip)} bytes gzip -9`]);
  out.push(['browser paywall page ≤ 30 KB gzip', `${verdict(size.pageGzip <= 30_000)}: ${fmt(size.pageGzip)} bytes gzip -9`]);
  const big = row(rows, '100 MiB paid body');
  const grow = numbers(big[0])[0];
  out.push(['large bodies stream without being buffered', `${verdict(grow < 16)}: workerd grows ${fmt(grow, 1)} MiB for a 100 MiB paid body (the peer ${fmt(numbers(big[1])[0], 1)} MiB)`]);
  return out;
}

/** The block of docs/benchmarks.md. */
export function benchmarksBlock({ size, report, timings = {}, commit }) {
  const { machine, table, rows } = report;
  const l = [];
  l.push(`Generated by \`bash scripts/figures.sh\`${commit ? ` at commit \`${commit}\`` : ''}; do not edit by hand.`);
  l.push('');
  l.push('| what | figure | command |');
  l.push('|---|---|---|');
  l.push(`| release wasm (cargo, wasm-bindgen, \`wasm-opt -O\`, no name section, \`opt-level = "s"\` outside the crypto crates) | ${fmt(size.wasmRaw)} bytes raw, ${fmt(size.wasmGzip)} bytes gzip -9 | \`bash scripts/build.sh && bash scripts/size.sh\` |`);
  l.push(`| browser paywall page (HTML with its script, QR code generator and style) | ${fmt(size.pageRaw)} bytes raw, ${fmt(size.pageGzip)} bytes gzip -9 (budget 30 KB) | \`bash scripts/size.sh\` |`);
  const t = (s) => (s === undefined ? 'not measured by this run' : `${Math.floor(s / 60) ? `${Math.floor(s / 60)} min ` : ''}${Math.round(s % 60)} s wall`);
  l.push(`| demo, tools installed | ${t(timings.demoSeconds)} | \`time bash scripts/demo.sh\` |`);
  l.push(`| test command on a fresh clone (\`.tools/\`, \`node_modules\`, \`target\` absent) | ${t(timings.freshCloneSeconds)} | \`bash scripts/figures.sh --fresh-clone\` (\`git clone\` into a temporary directory, then \`bash .ci/run\`) |`);
  l.push('');
  l.push('### Side by side with `@x402/hono`');
  l.push('');
  l.push(machine);
  l.push('');
  l.push(...table);
  l.push('');
  l.push('### Against the targets');
  l.push('');
  l.push('| target | result |');
  l.push('|---|---|');
  for (const [target, result] of targets(size, rows)) l.push(`| ${target} | ${result} |`);
  return l.join('\n');
}

/** The block of README.md: the headline figures and where they come from. */
export function headlineBlock({ size, report }) {
  const { rows } = report;
  const [o50, p50] = row(rows, '(b) paid request, facilitator 50 ms, p50');
  const [oTrips, pTrips] = row(rows, '(b) facilitator round trips per paid request, 50 ms').map((c) => numbers(c)[0]);
  const verify = verifyTimes(row(rows, 'EIP-3009 verify')[0]).wasm;
  return [
    `- a paid request with a facilitator answering in 50 ms: p50 ${o50} (the official \`@x402/hono\` middleware in the same runtime: ${p50}), ${fmt(oTrips, 2)} facilitator round trips per paid request (${fmt(pTrips, 2)});`,
    `- one EIP-3009 verification in wasm: ${fmt(verify, 1)} µs;`,
    `- the release wasm: ${fmt(size.wasmGzip)} bytes gzip -9; the browser payment page ${fmt(size.pageGzip)} bytes gzip -9.`,
  ].join('\n');
}

/** `text` with the lines between the two markers replaced by `block`. */
export function replaceBlock(text, name, block) {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`no ${begin} … ${end} block`);
  return `${text.slice(0, i + begin.length)}\n${block}\n${text.slice(j)}`;
}

function main() {
  const { values } = parseArgs({ options: { size: { type: 'string' }, report: { type: 'string' }, timings: { type: 'string' }, commit: { type: 'string' }, check: { type: 'boolean' } } });
  if (!values.size || !values.report) throw new Error('usage: node scripts/figures.mjs --size FILE --report FILE [--timings FILE] [--commit SHA] [--check]');
  const input = {
    size: parseSize(readFileSync(values.size, 'utf8')),
    report: parseReport(readFileSync(values.report, 'utf8')),
    timings: values.timings ? JSON.parse(readFileSync(values.timings, 'utf8')) : {},
    commit: values.commit,
  };
  const bench = benchmarksBlock(input);
  const headline = headlineBlock(input);
  if (values.check) {
    console.log(`${bench}\n\n${headline}`);
    return;
  }
  for (const [file, name, block] of [['docs/benchmarks.md', 'figures', bench], ['README.md', 'figures:headline', headline]]) {
    const p = path.join(ROOT, file);
    writeFileSync(p, replaceBlock(readFileSync(p, 'utf8'), name, block));
    console.log(`figures: ${file} updated`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
