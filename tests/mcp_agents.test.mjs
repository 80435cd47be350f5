// MCP tools priced at the edge, paid by Cloudflare's `agents` x402 MCP client (`withX402Client`
// from `agents/x402`, agents 0.32.0, installed apart in tests/agents/ by scripts/setup.sh), on the
// real path: @modelcontextprotocol/sdk's Client wrapped by withX402Client → the built Worker in
// Miniflare → the unmodified MCP server of tests/support/mcp_origin.mjs (JSON mode on
// /mcp-agents, SSE mode on /mcp-agents-sse); the official facilitator logic settles on the local
// chain. The agents client reads the price from the tool result's `_meta["x402/error"]`, pays
// with the official @x402/evm exact client and sends the payment base64-encoded in
// `params._meta["x402/payment"]`; it learns prices from `tools/list`'s `agents-x402/*` entries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { privateKeyToAccount } from 'viem/accounts';

import { KEYS, NETWORK, ROOT, balanceOf } from './support/stack.mjs';
import { runs, seen, startMcpStack, stopMcpStack } from './support/mcp_origin.mjs';

const agentsPackage = `${ROOT}/tests/agents/package.json`;
if (!existsSync(`${ROOT}/tests/agents/node_modules/agents`)) {
  throw new Error('tests/agents/node_modules is missing: run bash scripts/setup.sh (it installs Cloudflare\'s agents package there)');
}
const { withX402Client } = await import(createRequire(agentsPackage).resolve('agents/x402'));

const PRICE = 10000n;
const ctx = {};
before(() => startMcpStack(ctx, [{ path: '/mcp-agents' }, { path: '/mcp-agents-sse' }]));
after(() => stopMcpStack(ctx));

/** An MCP SDK client wrapped by the agents x402 client; `asked` records each confirmation. The
 * wrapped `callTool` takes a per-call confirmation callback first (null: the configured one). */
async function connect(path, { maxPaymentValue, confirm = true } = {}) {
  const asked = [];
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${ctx.worker.url}${path}`)));
  const paying = withX402Client(client, {
    account: privateKeyToAccount(KEYS.payer),
    network: NETWORK,
    maxPaymentValue,
    confirmationCallback: async (accepts) => { asked.push(accepts); return confirm; },
  });
  return { client: paying, asked, close: () => client.close() };
}

const balances = async () => [await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo)];
const toolCalls = (path) => seen.filter((m) => m.path === path && m.method === 'tools/call').length;

for (const path of ['/mcp-agents', '/mcp-agents-sse']) {
  test(`${path}: the agents client sees the price in tools/list, pays a priced tool once, and the tool runs once`, async () => {
    const { client, asked, close } = await connect(path);
    try {
      const { tools } = await client.listTools();
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      assert.match(byName.search.description, /\(This is a paid tool, you will be charged \$0\.01 for its execution\)$/);
      assert.equal(byName.echo.description, 'Free', 'a free tool is shown as the origin describes it');

      const before = await balances();
      const [ran, calls, settles] = [runs.search, toolCalls(path), ctx.stack.facilitator.calls.settle];
      const paid = await client.callTool(null, { name: 'search', arguments: {} });
      assert.equal(paid.isError, undefined, JSON.stringify(paid));
      assert.match(paid.content[0].text, /^results #/);
      const settled = paid._meta['x402/payment-response'];
      assert.equal(settled.success, true);
      assert.equal(settled.payer, ctx.stack.payer);
      assert.equal(settled.network, NETWORK);
      assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);

      assert.equal(asked.length, 1, 'the client was asked once');
      assert.equal(asked[0][0].amount, String(PRICE));
      assert.equal(asked[0][0].payTo.toLowerCase(), ctx.stack.payTo.toLowerCase());
      assert.equal(runs.search, ran + 1, 'the tool ran once');
      assert.equal(toolCalls(path), calls + 1, 'the origin saw only the paid call (the unpaid one stopped at the edge)');
      assert.equal(seen.at(-1).meta?.['x402/payment'], undefined, 'the payment did not reach the origin');
      assert.equal(ctx.stack.facilitator.calls.settle, settles + 1, 'one settle');
      const after = await balances();
      assert.equal(after[0], before[0] - PRICE);
      assert.equal(after[1], before[1] + PRICE);

      const free = await client.callTool(null, { name: 'echo', arguments: {} });
      assert.equal(free.content[0].text, 'echo');
      assert.equal(asked.length, 1, 'a free tool asks for nothing');
      assert.deepEqual(await balances(), after);
    } finally {
      await close();
    }
  });

  test(`${path}: the agents client's payment for an erroring tool is not charged`, async () => {
    const { client, close } = await connect(path);
    try {
      const before = await balances();
      const [fails, settles] = [runs.fail, ctx.stack.facilitator.calls.settle];
      const failed = await client.callTool(null, { name: 'fail', arguments: {} });
      assert.equal(failed.isError, true);
      assert.equal(failed.content[0].text, 'the tool failed');
      assert.equal(failed._meta?.['x402/payment-response'], undefined);
      assert.equal(runs.fail, fails + 1, 'the tool ran once (with the payment)');
      assert.equal(ctx.stack.facilitator.calls.settle, settles, 'nothing settled');
      assert.deepEqual(await balances(), before);
    } finally {
      await close();
    }
  });
}

test('the agents client declining (its cap, or its user) sends nothing: the origin never sees the call, nothing moves', async () => {
  const before = await balances();
  const [ran, calls, verifies] = [runs.search, toolCalls('/mcp-agents'), ctx.stack.facilitator.calls.verify];
  const capped = await connect('/mcp-agents', { maxPaymentValue: PRICE - 1n });
  try {
    const r = await capped.client.callTool(null, { name: 'search', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(r.content[0].text, /Payment exceeds client cap: 10000 > 9999/);
  } finally {
    await capped.close();
  }
  const declining = await connect('/mcp-agents', { confirm: false });
  try {
    const r = await declining.client.callTool(null, { name: 'search', arguments: {} });
    assert.equal(r.content[0].text, 'User declined payment');
    assert.equal(declining.asked.length, 1);
  } finally {
    await declining.close();
  }
  assert.equal(runs.search, ran);
  assert.equal(toolCalls('/mcp-agents'), calls, 'no call reached the origin');
  assert.equal(ctx.stack.facilitator.calls.verify, verifies, 'no facilitator call');
  assert.deepEqual(await balances(), before);
});
