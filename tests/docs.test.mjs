// The docs hold together: every relative link in README.md and docs/*.md reaches a file of the
// repository, and a #fragment into a Markdown file reaches one of its headings (GitHub's anchors);
// every repository path the pages name in backticks exists; every test a page names exists in the
// file it links to; and no page speaks of "this session"
// (the docs describe the current build, not how it came to be). Node built-ins only; nothing to
// build or start.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { benchmarksBlock, headlineBlock, parseReport, parseSize, replaceBlock } from '../scripts/figures.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PAGES = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** The page's text outside fenced code blocks, line by line (a fenced line becomes empty). */
function prose(text) {
  let fence = null;
  return text.split('\n').map((line) => {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === null) fence = m[1][0];
      else if (m[1][0] === fence) fence = null;
      return '';
    }
    return fence === null ? line : '';
  });
}

/** A line without its inline code spans. */
const withoutCode = (line) => line.replace(/(`+)[^`]*?\1/g, '');

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a Markdown file offers (duplicates numbered as GitHub does). */
function anchors(file) {
  const seen = new Map();
  const out = new Set();
  for (const line of prose(readFileSync(file, 'utf8'))) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative link targets of a page: `[text](target)` and `![alt](target)`, outside code. */
function links(page) {
  const out = [];
  prose(readFileSync(path.join(ROOT, page), 'utf8')).forEach((line, i) => {
    for (const m of withoutCode(line).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = m[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
      out.push({ target, line: i + 1 });
    }
  });
  return out;
}

test('the docs pages exist and the README links to each of them', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const page of PAGES.filter((p) => p.startsWith('docs/'))) {
    assert.ok(readme.includes(`](${page}`), `README.md does not link to ${page}`);
  }
});

test('every relative link in README.md and docs/*.md reaches a file, and its #fragment a heading', () => {
  const broken = [];
  for (const page of PAGES) {
    for (const { target, line } of links(page)) {
      const [file, fragment] = target.split('#', 2);
      const resolved = file === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), decodeURIComponent(file));
      if (!resolved.startsWith(ROOT) || !existsSync(resolved)) {
        broken.push(`${page}:${line}: ${target} (no such file)`);
        continue;
      }
      if (fragment !== undefined && resolved.endsWith('.md') && !anchors(resolved).has(fragment)) {
        broken.push(`${page}:${line}: ${target} (no heading with that anchor in ${path.relative(ROOT, resolved)})`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('every repository path named in backticks exists', () => {
  const missing = [];
  for (const page of PAGES) {
    prose(readFileSync(path.join(ROOT, page), 'utf8')).forEach((line, i) => {
      for (const m of line.matchAll(/`((?:src|tests|scripts|bench|benches|examples|docs)\/[^`\s]*)`/g)) {
        const name = m[1];
        // Patterns and elisions (`tests/*.test.mjs`, `src/…`) are not paths.
        if (/[*…<>{}]/.test(name)) continue;
        // Generated, never committed.
        if (name.startsWith('bench/.build')) continue;
        if (!existsSync(path.join(ROOT, name))) missing.push(`${page}:${i + 1}: ${name}`);
      }
    });
  }
  assert.deepEqual(missing, []);
});

test('every test a page names exists in the file it links to', () => {
  // `[`file`](../tests/file) › name, name…; …`: a host test by the start of its function name, a
  // node test by its title (or the start of it, up to an ellipsis).
  const missing = [];
  for (const page of PAGES) {
    prose(readFileSync(path.join(ROOT, page), 'utf8')).forEach((line, i) => {
      for (const m of line.matchAll(/\[`[^`]+`\]\((?:\.\.\/)?(tests\/[^)#]+)\) › ([^;|]+)/g)) {
        const [, file, names] = m;
        const source = readFileSync(path.join(ROOT, file), 'utf8').replace(/\\'/g, "'");
        const wanted = file.endsWith('.rs')
          ? names.split(',').map((n) => n.trim().replace(/_?…$/, '').trim()).filter(Boolean).map((n) => [n, `fn ${n}`])
          : (names.includes('…') ? names.split(/…,?/) : [names]).map((n) => n.trim().replace(/^,\s*/, '').trim()).filter(Boolean).map((n) => [n, n]);
        for (const [name, needle] of wanted) if (!source.includes(needle)) missing.push(`${page}:${i + 1}: ${file} › ${name}`);
      }
    });
  }
  assert.deepEqual(missing, []);
});

test('no page speaks of "this session"', () => {
  const found = [];
  for (const page of PAGES) {
    readFileSync(path.join(ROOT, page), 'utf8').split('\n').forEach((line, i) => {
      if (/this session/i.test(line)) found.push(`${page}:${i + 1}`);
    });
  }
  assert.deepEqual(found, []);
});

test('the slugs follow GitHub: punctuation dropped, spaces to hyphens, underscores kept', () => {
  assert.equal(slug("The ledger's consistency model"), 'the-ledgers-consistency-model');
  assert.equal(slug('Chain evidence: `RPC_URL`'), 'chain-evidence-rpc_url');
  assert.equal(slug('Wallet sign-in (x402 `sign-in-with-x`)'), 'wallet-sign-in-x402-sign-in-with-x');
  assert.equal(slug('1. A service binding (the origin is a Worker)'), '1-a-service-binding-the-origin-is-a-worker');
});

test('the figures blocks are the shape scripts/figures.mjs writes, and it reads its own output back', () => {
  const bench = readFileSync(path.join(ROOT, 'docs/benchmarks.md'), 'utf8');
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = bench.slice(bench.indexOf('<!-- figures:begin -->'), bench.indexOf('<!-- figures:end -->'));
  assert.ok(block.length > 0 && readme.includes('<!-- figures:headline:begin -->') && readme.includes('<!-- figures:headline:end -->'));
  // The side-by-side table in the block is bench/run.mjs's report: the generator reads it.
  const start = block.indexOf('Machine:');
  const report = parseReport(block.slice(start, block.indexOf('### Against the targets')));
  const size = parseSize('release wasm: raw 1000 bytes (0 KiB), gzip -9 400 bytes (0 KiB)\npaywall page: raw 300 bytes (0 KiB), gzip -9 100 bytes (0 KiB); budget 30 KiB gzip\n');
  const written = benchmarksBlock({ size, report, commit: 'abc1234' });
  assert.match(written, /\| release wasm .* \| 1,000 bytes raw, 400 bytes gzip -9 \|/);
  assert.match(headlineBlock({ size, report }), /the release wasm: 400 bytes gzip -9/);
  const again = replaceBlock(bench, 'figures', written);
  assert.equal(replaceBlock(again, 'figures', written), again);
});
