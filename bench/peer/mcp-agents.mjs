// The MCP peer: the same MCP server as bench/peer/mcp-origin.mjs with its tool paid through
// Cloudflare's agents SDK (`withX402` + `paidTool` from `agents/x402`, agents 0.32.0: verify at
// the facilitator, run the tool, settle), as its documentation shows, at the same price, payee and
// facilitator as ours.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { withX402 } from 'agents/x402';
import { search, serve } from './mcp-origin.mjs';

export default {
  fetch(request, env) {
    return serve(request, () => {
      const server = withX402(new McpServer({ name: 'bench', version: '1.0.0' }), {
        network: 'eip155:84532',
        recipient: env.PAY_TO,
        facilitator: { url: env.FACILITATOR_URL },
      });
      server.paidTool('search', 'Searches', 0.01, {}, {}, search);
      return server;
    });
  },
};
