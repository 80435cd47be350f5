// The MCP origin of the MCP rows: an unmodified MCP server (@modelcontextprotocol/sdk's McpServer
// + its Web-standard Streamable HTTP transport, JSON answers) with one tool, `search`. One session
// per isolate, as an agents `McpAgent` holds one per Durable Object: the first `initialize` makes
// the server and its transport, later requests name the session in `Mcp-Session-Id` (the bench
// initializes once, then sends every call in that session, each under its own JSON-RPC id). Behind our Worker
// (its ORIGIN_SERVICE binding) it is priced at the edge; bench/peer/mcp-agents.mjs is the same
// server paid through Cloudflare's agents SDK.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';

/** The tool's work: a small constant answer. */
export const search = async () => ({ content: [{ type: 'text', text: '{"results":["a","b","c"]}' }] });

let session;

/** Serves one Streamable HTTP request in this isolate's session (made by `build()` once). */
export async function serve(request, build) {
  session ??= (async () => {
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: () => crypto.randomUUID(), enableJsonResponse: true });
    await build().connect(transport);
    return transport;
  })();
  return (await session).handleRequest(request);
}

export default {
  fetch(request) {
    return serve(request, () => {
      const server = new McpServer({ name: 'bench', version: '1.0.0' });
      server.registerTool('search', { description: 'Searches' }, search);
      return server;
    });
  },
};
