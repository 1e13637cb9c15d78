import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { SERVICE_NAMES, type ServiceName, type ServiceStatus } from './test-services.ts';

/*
 * Probes the external services once per run (see test-services.ts). Suites declare what they need
 * with `serviceGate('<name>')`; the files that do are found by that call, so the printed list of
 * skipped suites cannot go stale.
 */

const env = process.env;
const POSTGRES_URL = env.EDGELOOP_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MOSQUITTO_URL = env.EDGELOOP_TEST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883';

async function probePostgres(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

function probeTcp(url: string): Promise<string | null> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    const done = (reason: string | null) => {
      socket.destroy();
      resolve(reason);
    };
    socket.setTimeout(2_000, () => done('timed out after 2 s'));
    socket.once('connect', () => done(null));
    socket.once('error', (error) => done(error.message));
  });
}

/** Test files that gate a suite on each service (`serviceGate('postgres')`). */
function suitesNeeding(root: string): Record<ServiceName, string[]> {
  const needs: Record<ServiceName, string[]> = { postgres: [], mosquitto: [] };
  let listing = '';
  try {
    listing = execFileSync('git', ['grep', '--untracked', '-l', '-E', "serviceGate\\('[a-z]+'\\)", '--', '*.test.ts'], {
      cwd: root,
      encoding: 'utf8',
    });
  } catch {
    return needs; // git grep exits 1 when nothing matches
  }
  for (const file of listing.split('\n').filter(Boolean)) {
    const text = readFileSync(path.join(root, file), 'utf8');
    for (const name of SERVICE_NAMES) if (text.includes(`serviceGate('${name}')`)) needs[name].push(file);
  }
  return needs;
}

export default async function setup(project: TestProject): Promise<void> {
  const [postgres, mosquitto] = await Promise.all([probePostgres(POSTGRES_URL), probeTcp(MOSQUITTO_URL)]);
  const services: Record<ServiceName, ServiceStatus> = {
    postgres: { label: 'PostgreSQL', url: POSTGRES_URL, unreachable: postgres },
    mosquitto: { label: 'Mosquitto', url: MOSQUITTO_URL, unreachable: mosquitto },
  };
  const needs = suitesNeeding(project.config.root);
  const missing = SERVICE_NAMES.filter((name) => needs[name].length > 0 && services[name].unreachable !== null);
  const describe = (name: ServiceName) =>
    `${services[name].label} at ${services[name].url} is unreachable (${services[name].unreachable})`;
  if (missing.length > 0 && env.CI) {
    throw new Error(
      `CI=true: ${missing.map(describe).join('; ')}; the suites that need it must run in CI: ${missing
        .flatMap((name) => needs[name])
        .join(', ')}. Start it (.ci/run starts PostgreSQL with pg_ctlcluster) or unset CI to skip them.`,
    );
  }
  for (const name of missing) {
    console.warn(`[services] skipped, ${describe(name)}: ${needs[name].join(', ')}`);
  }
  project.provide('services', services);
}
