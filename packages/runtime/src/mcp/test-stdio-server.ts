/** Test support: the test MCP server over stdio, as a program a sandbox would run (sandbox.md §14.3). */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { buildTestMcpServer } from './test-mcp-server.js';

const server = buildTestMcpServer([]);
await server.connect(new StdioServerTransport());
