
// tailgate: serve createMcpServer() over stdio (see NOTICE.md).
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

console.log = (...args: unknown[]) => console.error(...args); // stdout is the protocol
createMcpServer()
  .connect(new StdioServerTransport())
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
