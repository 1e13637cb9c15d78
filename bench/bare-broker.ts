// Child of bench/ingest.ts: a bare aedes 1.2 broker (no auth, no storage), the memory peer of the
// control plane. Reports its port and, on request, its RSS over IPC.
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const broker = await Aedes.createBroker({});
const server = createServer(broker.handle);
await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
const port = (server.address() as { port: number }).port;
process.send?.({ type: 'ready', port, rss: process.memoryUsage.rss() });
process.on('message', (message: { type: string }) => {
  if (message.type === 'rss') {
    global.gc?.();
    process.send?.({ type: 'rss', rss: process.memoryUsage.rss(), clients: broker.connectedClients });
  }
  if (message.type === 'stop') process.exit(0);
});
