// An unmodified MCP server built on @modelcontextprotocol/sdk (McpServer +
// StreamableHTTPServerTransport, stateful sessions, one McpServer per session as the SDK's
// examples do it): SSE response mode on paths ending in `-sse`, JSON on every other. Tools:
// `search` (sends two progress notifications 400 ms apart when asked, then answers), `fail`
// (answers isError: true), `echo` (free). Counts tool runs and records every message it receives.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

import { startStack, startWorker } from './stack.mjs';

export const runs = { search: 0, fail: 0, echo: 0 };
/** Every JSON-RPC message the MCP origin received: {path, method, name}. */
export const seen = [];

/** One McpServer per session, as the SDK's examples do it. */
function mcpServer() {
  const server = new McpServer({ name: 'unmodified', version: '1.0.0' });
  server.registerTool('search', { description: 'Searches' }, async (extra) => {
    runs.search += 1;
    const token = extra._meta?.progressToken;
    if (token !== undefined) {
      // Progress, then work: a relayed answer shows it to the client while the tool still runs.
      for (let i = 1; i <= 2; i++) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: 2 } });
        await new Promise((r) => setTimeout(r, 400));
      }
    }
    return { content: [{ type: 'text', text: `results #${runs.search}` }] };
  });
  server.registerTool('fail', { description: 'Always fails' }, async () => {
    runs.fail += 1;
    return { content: [{ type: 'text', text: 'the tool failed' }], isError: true };
  });
  server.registerTool('echo', { description: 'Free' }, async () => {
    runs.echo += 1;
    return { content: [{ type: 'text', text: 'echo' }] };
  });
  return server;
}

export async function startMcpOrigin() {
  const transports = new Map();
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = raw ? JSON.parse(raw) : undefined;
    const path = req.url.split('?')[0];
    if (body && !Array.isArray(body)) seen.push({ path, method: body.method, name: body.params?.name, meta: body.params?._meta });
    const json = !path.endsWith('-sse');
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? transports.get(`${path} ${sid}`) : undefined;
    if (!transport) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: json,
        onsessioninitialized: (id) => transports.set(`${path} ${id}`, transport),
      });
      await mcpServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

/** The tools' prices on every MCP server the tests configure. */
export const TOOLS = { search: '$0.01', fail: '$0.01', echo: 'free' };

/**
 * Fills `ctx` with the local stack (`ctx.stack`), this MCP origin (`ctx.origin`) and the built
 * Worker in front of it (`ctx.worker`) with the `[[vars.MCP]]` entries `servers` (each
 * `{ path, … }`, given {@link TOOLS} and `default = "deny"`) and one priced route; `stopMcpStack`
 * stops them.
 */
export async function startMcpStack(ctx, servers) {
  ctx.stack = await startStack();
  ctx.origin = await startMcpOrigin();
  ctx.worker = await startWorker({
    originUrl: ctx.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo,
    routes: [{ route: 'GET /premium/*', price: '$0.05' }],
    extraBindings: { ...ctx.stack.workerBindings, MCP: servers.map((s) => ({ tools: TOOLS, default: 'deny', ...s })) },
  });
}

export async function stopMcpStack(ctx) {
  await ctx.worker?.stop();
  await ctx.origin?.stop();
  await ctx.stack?.stop();
}
