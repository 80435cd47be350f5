// MCP tools priced at the edge (docs/mcp.md), on the real path: the built Worker in Miniflare in
// front of an unmodified MCP server built on @modelcontextprotocol/sdk (McpServer +
// StreamableHTTPServerTransport, stateful sessions, in JSON response mode on /mcp and SSE mode on
// /mcp-sse), called by @modelcontextprotocol/sdk's Client + StreamableHTTPClientTransport whose
// tool calls carry a payment the official @x402/core + @x402/evm client made from the
// PaymentRequired tool result, put in params._meta["x402/payment"] as x402's MCP transport says.
// In SSE mode the tool's progress notifications reach the client while it runs; the result waits
// for settlement.
// The local chain and the official facilitator logic settle it: balances move once per paid call.
// On /mcp-pass the server sells a pass (x402/pass in result._meta) that runs its tools without
// payment, presented in params._meta["x402/pass"] or in the X402-Pass header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client } from '@x402/core/client';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { toClientEvmSigner } from '@x402/evm';

import { KEYS, NETWORK, balanceOf } from './support/stack.mjs';
import { runs, seen, startMcpStack, stopMcpStack } from './support/mcp_origin.mjs';

const ctx = {};
before(async () => {
  await startMcpStack(ctx, [{ path: '/mcp' }, { path: '/mcp-sse' }, { path: '/mcp-pass', pass: { ttl: '1h', maxRequests: 5 } }]);
  ctx.x402 = new x402Client().register(NETWORK, new ExactEvmScheme(toClientEvmSigner(privateKeyToAccount(KEYS.payer))));
});
after(() => stopMcpStack(ctx));

async function connect(path, headers = {}) {
  const client = new Client({ name: 'payer', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${ctx.worker.url}${path}`), { requestInit: { headers } }));
  return client;
}

const balances = async () => [await balanceOf(ctx.stack.rpcUrl, ctx.stack.payer), await balanceOf(ctx.stack.rpcUrl, ctx.stack.payTo)];

for (const path of ['/mcp', '/mcp-sse']) {
  test(`${path}: initialize, notifications, tools/list and a free tool pass; tools/list carries the prices`, async () => {
    const client = await connect(path);
    try {
      assert.equal(client.getServerVersion().name, 'unmodified', 'initialize answered by the origin');
      const { tools } = await client.listTools();
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      assert.deepEqual(Object.keys(byName).sort(), ['echo', 'fail', 'search']);
      const price = byName.search._meta['x402/payment-required'];
      assert.equal(price.accepts[0].amount, '10000');
      assert.equal(price.resource.url, 'mcp://tool/search');
      assert.equal(price.extensions.bazaar.info.input.type, 'mcp');
      assert.equal(byName.echo._meta, undefined);
      const echoes = runs.echo;
      const free = await client.callTool({ name: 'echo', arguments: {} });
      assert.equal(free.content[0].text, 'echo');
      assert.equal(runs.echo, echoes + 1);
      assert.ok(seen.some((m) => m.path === path && m.method === 'notifications/initialized'), 'the initialized notification reached the origin');
    } finally {
      await client.close();
    }
  });

  test(`${path}: an unpaid call never reaches the origin; a paid call runs once and moves the price once; a replay runs nothing`, async () => {
    const client = await connect(path);
    try {
      const before = await balances();
      const settles = ctx.stack.facilitator.calls.settle;
      const ran = runs.search;
      const calls = seen.filter((m) => m.method === 'tools/call').length;
      const unpaid = await client.callTool({ name: 'search', arguments: {} });
      assert.equal(unpaid.isError, true);
      const required = unpaid.structuredContent;
      assert.equal(required.x402Version, 2);
      assert.deepEqual(JSON.parse(unpaid.content[0].text), required);
      assert.equal(runs.search, ran, 'unpaid: the tool did not run');
      assert.equal(seen.filter((m) => m.method === 'tools/call').length, calls, 'unpaid: the origin never saw the call');

      const payment = await ctx.x402.createPaymentPayload(required);
      const progress = [];
      const progressAt = [];
      const paid = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/payment': payment } }, undefined, {
        onprogress: (p) => { progress.push(p.progress); progressAt.push(Date.now()); },
      });
      const resultAt = Date.now();
      assert.equal(paid.isError, undefined);
      assert.match(paid.content[0].text, /^results #/);
      const settled = paid._meta['x402/payment-response'];
      assert.equal(settled.success, true);
      assert.equal(settled.payer, ctx.stack.payer);
      assert.match(settled.transaction, /^0x[0-9a-f]{64}$/);
      if (path === '/mcp-sse') {
        assert.deepEqual(progress, [1, 2], 'the progress notifications arrive');
        // The tool works 800 ms after its first progress: relayed, it reaches the client then,
        // not with the result (measured: about 1.1 s before it).
        assert.ok(resultAt - progressAt[0] >= 600, `the first progress came ${resultAt - progressAt[0]} ms before the result`);
        assert.ok(progressAt[1] - progressAt[0] >= 300, 'and the second one 400 ms after it');
      }
      assert.equal(runs.search, ran + 1);
      assert.equal(seen.at(-1).meta?.['x402/payment'], undefined, 'the payment did not reach the origin');
      const after = await balances();
      assert.equal(after[0], before[0] - 10000n);
      assert.equal(after[1], before[1] + 10000n);
      assert.equal(ctx.stack.facilitator.calls.settle, settles + 1, 'one settle');

      const replay = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/payment': payment } });
      assert.equal(replay.isError, true);
      assert.match(replay.structuredContent.error, /invalid_transaction_state/);
      assert.equal(runs.search, ran + 1, 'the replay ran nothing');
      assert.deepEqual(await balances(), after);
    } finally {
      await client.close();
    }
  });

  test(`${path}: an erroring tool is not charged`, async () => {
    const client = await connect(path);
    try {
      const before = await balances();
      const settles = ctx.stack.facilitator.calls.settle;
      const unpaid = await client.callTool({ name: 'fail', arguments: {} });
      const payment = await ctx.x402.createPaymentPayload(unpaid.structuredContent);
      const failed = await client.callTool({ name: 'fail', arguments: {}, _meta: { 'x402/payment': payment } });
      assert.equal(failed.isError, true);
      assert.equal(failed.content[0].text, 'the tool failed');
      assert.equal(failed._meta, undefined);
      assert.deepEqual(await balances(), before);
      assert.equal(ctx.stack.facilitator.calls.settle, settles, 'nothing settled');
    } finally {
      await client.close();
    }
  });
}

test('a base64 payment (the agents client form) pays; a denied tool and a batch are refused before the origin', async () => {
  const client = await connect('/mcp');
  try {
    const unpaid = await client.callTool({ name: 'search', arguments: {} });
    const payment = await ctx.x402.createPaymentPayload(unpaid.structuredContent);
    const encoded = Buffer.from(JSON.stringify(payment)).toString('base64');
    const paid = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/payment': encoded } });
    assert.equal(paid._meta['x402/payment-response'].success, true);
    await assert.rejects(client.callTool({ name: 'unknown', arguments: {} }), /not offered here/);
  } finally {
    await client.close();
  }
  const calls = seen.length;
  const batch = await fetch(`${ctx.worker.url}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search' } }]),
  });
  assert.equal(batch.status, 400);
  assert.equal((await batch.json()).error.code, -32600);
  assert.equal(seen.length, calls, 'the batch never reached the origin');
});

/** POSTs one JSON-RPC message in session `sid`; the JSON-RPC messages of the answer (JSON or SSE). */
async function rawPost(path, sid, message) {
  const res = await fetch(`${ctx.worker.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify(message),
  });
  const text = await res.text();
  if (!text) return [];
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) return [JSON.parse(text)];
  return text.split(/\n\n/).map((e) => e.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('')).filter(Boolean).map((d) => JSON.parse(d));
}

for (const path of ['/mcp', '/mcp-sse']) {
  // The SDK's server maps answers to streams by request id, without a check for a second request
  // with the same id, and drops the answer of a cancelled request: before the paywall gave a paid
  // call an id of its own, either made the paid call end unanswered (the tool ran, nothing was
  // charged, the payment reusable) or sent its result on the stream of a free call.
  test(`${path}: a second request with the paid call's id, or its cancellation, neither takes nor ends the paid call`, async () => {
    const client = await connect(path);
    const sid = client.transport.sessionId;
    try {
      const unpaid = await client.callTool({ name: 'search', arguments: {} });
      const payment = await ctx.x402.createPaymentPayload(unpaid.structuredContent);
      const before = await balances();
      const [ran, echoes, settles] = [runs.search, runs.echo, ctx.stack.facilitator.calls.settle];
      const paid = rawPost(path, sid, { jsonrpc: '2.0', id: 900, method: 'tools/call', params: { name: 'search', arguments: {}, _meta: { progressToken: 'p', 'x402/payment': payment } } });
      await new Promise((r) => setTimeout(r, 150));
      await rawPost(path, sid, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 900, reason: 'hostile' } });
      const free = await rawPost(path, sid, { jsonrpc: '2.0', id: 900, method: 'tools/call', params: { name: 'echo', arguments: {} } });
      assert.deepEqual(free.map((m) => [m.id, m.result?.content?.[0]?.text]), [[900, 'echo']], 'the free call got its own answer only');
      const answer = (await paid).find((m) => m.id === 900);
      assert.match(answer?.result?.content?.[0]?.text ?? '', /^results #/, JSON.stringify(answer));
      assert.equal(answer.result._meta['x402/payment-response'].success, true);
      assert.equal(runs.search, ran + 1);
      assert.equal(runs.echo, echoes + 1);
      assert.equal(ctx.stack.facilitator.calls.settle, settles + 1, 'the paid call was settled once');
      const after = await balances();
      assert.equal(after[0], before[0] - 10000n);
      assert.equal(after[1], before[1] + 10000n);
    } finally {
      await client.close();
    }
  });
}

test('/mcp-pass: a paid call buys the server pass; then N calls with it run the tool N times with no facilitator call and no balance change', async () => {
  const client = await connect('/mcp-pass');
  try {
    const unpaid = await client.callTool({ name: 'search', arguments: {} });
    assert.match(unpaid.structuredContent.resource.description, /5 requests within 1 hour to every priced tool of \/mcp-pass/);
    const payment = await ctx.x402.createPaymentPayload(unpaid.structuredContent);
    const before = await balances();
    const paid = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/payment': payment } });
    assert.equal(paid._meta['x402/payment-response'].success, true);
    const token = paid._meta['x402/pass'];
    assert.match(token, /^[A-Za-z0-9_-]{43}$/, 'the pass in result._meta');
    assert.ok(paid._meta['x402/pass-expires'] > Date.now() / 1000);
    const bought = await balances();
    assert.equal(bought[0], before[0] - 10000n, 'the pass was paid once');

    const [ran, fails, facilitator, calls] = [runs.search, runs.fail, { ...ctx.stack.facilitator.calls }, seen.length];
    const N = 3;
    for (let i = 0; i < N; i++) {
      const r = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/pass': token } });
      assert.match(r.content[0].text, /^results #/);
      assert.equal(r._meta['x402/payment-response'], undefined, 'no payment');
    }
    assert.equal(runs.search, ran + N, 'the tool ran N times');
    assert.deepEqual(seen.slice(calls).map((m) => m.meta?.['x402/pass']), Array(N).fill(undefined), 'the pass never reached the origin');
    // The Streamable HTTP client's own header, for another priced tool of the server.
    const viaHeader = await connect('/mcp-pass', { 'X402-Pass': token });
    try {
      const r = await viaHeader.callTool({ name: 'fail', arguments: {} });
      assert.equal(r.content[0].text, 'the tool failed', 'the server pass opens every priced tool');
      assert.equal(runs.fail, fails + 1);
    } finally {
      await viaHeader.close();
    }
    assert.deepEqual(ctx.stack.facilitator.calls, facilitator, 'no facilitator call');
    assert.deepEqual(await balances(), bought, 'no balance change');
    // The failed call was given back: 5 bought = the paid one + N + 1 more.
    const last = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/pass': token } });
    assert.match(last.content[0].text, /^results #/);
    const spent = await client.callTool({ name: 'search', arguments: {}, _meta: { 'x402/pass': token } });
    assert.equal(spent.isError, true);
    assert.match(spent.structuredContent.error, /^pass_used_up/);
    assert.equal(runs.search, ran + N + 1);
  } finally {
    await client.close();
  }
  const other = await connect('/mcp');
  try {
    const r = await other.callTool({ name: 'search', arguments: {}, _meta: { 'x402/pass': 'A'.repeat(43) } });
    assert.equal(r.isError, true);
    assert.match(r.structuredContent.error, /^pass_unknown/);
  } finally {
    await other.close();
  }
});
