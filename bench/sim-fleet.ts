// Child process of bench/ingest.ts: a simulated fleet, driven over IPC so its memory is its own.
import v8 from 'node:v8';
import { createFleet } from '@edgeloop/simulator';

// The simulator's own V8 setting: optimise for size. Without it V8 keeps the heap it grew to in
// the enrolment and connect storms: 5,000 devices on the light MQTT client (2026-12-04, this
// 2-core machine) grew by 30 KiB of committed heap per device for 12 KiB live, 38 KiB RSS per
// device; with it 9 KiB committed for 11 KiB live (the GC gives pages back), 14-17 KiB RSS per
// device. Set at run time: V8 reads this flag at every GC, not only at start.
v8.setFlagsFromString('--optimize-for-size');

type Job = { url: string; token: string; devices: number; telemetryIntervalS: number; connectRate: number };
type Request = { type: 'enroll' } | { type: 'start' } | { type: 'stats'; resetLag?: boolean } | { type: 'stop' };

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const fleet = createFleet({
  controlPlaneUrl: job.url,
  token: job.token,
  devices: job.devices,
  prefix: 'bench',
  keepaliveS: 60,
  telemetryIntervalS: job.telemetryIntervalS,
  cameraFps: 15,
  outboxMaxBytes: 256 * 1024,
  connectRate: job.connectRate,
  measure: true,
});

function rss(): number {
  return process.memoryUsage().rss;
}

const send = (message: unknown) => process.send?.(message);
send({ type: 'ready', rss: rss() });

process.on('message', (request: Request) => {
  void (async () => {
    try {
      switch (request.type) {
        case 'enroll':
          await fleet.enroll();
          global.gc?.();
          send({ type: 'enrolled', rss: rss() });
          break;
        case 'start':
          await fleet.start();
          await fleet.waitFor((stats) => stats.connected === job.devices, 120_000);
          send({ type: 'started', stats: fleet.stats() });
          break;
        case 'stats':
          global.gc?.();
          send({
            type: 'stats',
            stats: fleet.stats(),
            rss: rss(),
            appended: fleet.tracker?.appendedCount ?? 0,
            acked: fleet.tracker?.ackedCount ?? 0,
          });
          if (request.resetLag) fleet.tracker?.resetLag();
          break;
        case 'stop':
          await fleet.stop();
          send({
            type: 'stopped',
            stats: fleet.stats(),
            appended: fleet.tracker?.appendedCount ?? 0,
            acked: fleet.tracker?.ackedCount ?? 0,
            unacked: fleet.tracker?.unacked ?? 0,
          });
          setTimeout(() => process.exit(0), 100);
          break;
      }
    } catch (error) {
      send({ type: 'error', message: (error as Error).message });
    }
  })();
});
