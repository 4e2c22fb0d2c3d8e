
// tailgate: serve createMcpServer() over the legacy SSE transport (see NOTICE.md).
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import express from 'express';

const sseApp = express();
const sseTransports: { [sessionId: string]: SSEServerTransport } = {};
sseApp.get('/sse', async (_req, res) => {
  const transport = new SSEServerTransport('/messages', res);
  sseTransports[transport.sessionId] = transport;
  res.on('close', () => delete sseTransports[transport.sessionId]);
  await createMcpServer().connect(transport);
});
sseApp.post('/messages', async (req, res) => {
  const transport = sseTransports[String(req.query.sessionId)];
  if (!transport) {
    res.status(404).send('unknown session');
    return;
  }
  await transport.handlePostMessage(req, res);
});
const ssePort = process.env.PORT || 3000;
sseApp.listen(ssePort, () => {
  console.log(`MCP Conformance SSE Server running on http://localhost:${ssePort}/sse`);
});
