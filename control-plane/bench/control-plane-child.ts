// Child process of ingest-burst.ts: runs a bare aedes broker or a control plane, so that the
// publishers (in the parent) do not share its event loop, and reports its numbers over IPC.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import pino from 'pino';
import { loadConfig } from '../src/config.ts';
import { type ControlPlane, createControlPlane } from '../src/control-plane.ts';

type Message =
  | { cmd: 'start-aedes' }
  | { cmd: 'start-cp'; devices: number }
  | { cmd: 'reset' | 'stats' | 'gc' | 'stop' };

let cp: ControlPlane | null = null;
let aedes: Aedes | null = null;
let server: Server | null = null;
let dataDir = '';
const gc = () => (globalThis as { gc?: () => void }).gc?.();

process.on('message', async (message: Message) => {
  switch (message.cmd) {
    case 'start-aedes': {
      aedes = await Aedes.createBroker();
      server = createServer(aedes.handle);
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      process.send?.({ mqttUrl: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}` });
      break;
    }
    case 'start-cp': {
      dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-bench-'));
      const config = loadConfig({
        overrides: {
          httpPort: 0,
          mqttPort: 0,
          host: '127.0.0.1',
          dataDir,
          adminToken: `bench-${randomBytes(12).toString('hex')}`,
          logLevel: 'silent',
        },
      });
      cp = createControlPlane(config, { logger: pino({ level: 'silent' }) });
      const started = await cp.start();
      const passwords: Record<string, string> = {};
      for (let i = 0; i < message.devices; i++) {
        const id = `dev-${String(i).padStart(5, '0')}`;
        const enrolled = await cp.internals.fleet.enroll({ id, labels: { site: `site-${i % 10}` } });
        if (enrolled.ok) passwords[id] = enrolled.value.credentials.password;
      }
      process.send?.({ mqttUrl: started.mqttUrl, passwords });
      break;
    }
    case 'reset':
      cp?.internals.eventLoop.reset();
      process.send?.({ ok: true });
      break;
    case 'stats': {
      const internals = cp?.internals;
      process.send?.({
        stats: internals?.ingest.stats(),
        loop: internals ? { p99: internals.eventLoop.p99Ms(), max: internals.eventLoop.maxMs() } : null,
      });
      break;
    }
    case 'gc':
      gc();
      await new Promise((resolve) => setTimeout(resolve, 200));
      gc();
      process.send?.({ ok: true });
      break;
    case 'stop':
      await cp?.stop();
      if (aedes) await new Promise<void>((resolve) => aedes!.close(() => resolve()));
      server?.close();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      process.send?.({ ok: true }, () => process.exit(0));
      break;
  }
});
