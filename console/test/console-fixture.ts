import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ApiClient, CONFIDENCE_BINS, createApiClient, type ModelView, type RolloutView } from '@edgeloop/protocol';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import sharp from 'sharp';
import { build } from 'vite';
import {
  SYSTEM,
  startTestControlPlane,
  type TestControlPlane,
  type TestDevice,
} from '../../control-plane/test/harness.ts';
import { createSigningKit, type SigningKit } from '../../control-plane/test/model-fixtures.ts';
import { basicAuth, metadataFor, uploadSample } from '../../control-plane/test/sample-fixtures.ts';
import { createVirtualFleet, type VirtualFleet } from '../../control-plane/test/virtual-fleet.ts';

/*
 * What the console's Chromium tests and `npm run screenshots` share: the console built from
 * source into a temp folder, a real control plane serving it (real SQLite, aedes, HTTP on port 0),
 * a fleet of 25 devices (23 virtual ones fed through the real ingest, and 2 real MQTT clients
 * that answer commands), two signed models, six hard samples uploaded by the real devices, and
 * Debian's Chromium driven by playwright-core.
 */

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];

/** Why the Chromium tests cannot run here, or null when they can. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install -y chromium)`;
}

const CONSOLE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Builds the console from source into `outDir` (the same build `npm install` runs). */
export async function buildConsole(outDir: string): Promise<void> {
  await build({
    configFile: join(CONSOLE_ROOT, 'vite.config.ts'),
    root: CONSOLE_ROOT,
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true, sourcemap: false },
  });
}

const STAGES = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '50%', kind: 'percent', percent: 50 },
  { name: '100%', kind: 'percent', percent: 100 },
] as const;
export const FAST_ROLLOUT = {
  selector: { labels: { fleet: 'demo' } },
  stages: STAGES.map((stage) => ({ ...stage })),
  canary: { minSize: 3, maxSize: 4 },
  evidence: { minDevices: 2, soakS: 10, minFrames: 100, failMinS: 20 },
  gates: { windowS: 20, failingWindowsRequired: 2 },
};

/** One pipeline telemetry window: `fps` processed frames per second, inference p95 `p95` ms. */
function pipelineWindow(windowS: number, fps: number, p95: number) {
  const frames = Math.round(fps * windowS);
  return {
    windowS,
    framesIn: frames,
    framesProcessed: frames,
    framesDropped: 0,
    inferenceErrors: 0,
    fps,
    latencyMs: { inference: { count: frames, p50: p95 * 0.7, p95, p99: p95 * 1.2, max: p95 * 1.5 } },
    detectionsPer1000: { car: 3000 },
    confidenceHistogram: Array.from({ length: CONFIDENCE_BINS }, (_, bin) => (bin === 15 ? 80 : 5)),
    nearThresholdShare: 0.1,
    lastInferenceAt: Date.now(),
    provider: { requested: ['cpu'], active: 'cpu' },
    model: null,
    camera: null,
  };
}

const PHOTOS = ['scenetext01.jpg', 'scenetext02.jpg'].map((name) =>
  fileURLToPath(new URL(`../../test-media/images/${name}`, import.meta.url)),
);
export const SAMPLE_SIZE = { width: 640, height: 480 } as const;

/**
 * Hard samples from a real device through the real upload route (its own credential, the
 * resumable protocol): the repository's sample photos at 640x480, each with two predicted boxes.
 */
async function uploadSamples(baseUrl: string, device: TestDevice, count: number): Promise<void> {
  const strategies = ['near-threshold', 'class-rare', 'random'] as const;
  for (let i = 0; i < count; i++) {
    const jpeg = await sharp(PHOTOS[i % PHOTOS.length]!)
      .resize(SAMPLE_SIZE.width, SAMPLE_SIZE.height, { fit: 'fill' })
      .modulate({ brightness: 1 + i * 0.05 })
      .jpeg({ quality: 80 })
      .toBuffer();
    const metadata = metadataFor(device.id, jpeg, SAMPLE_SIZE, {
      model: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
      strategy: strategies[i % strategies.length]!,
      reason: i % 2 === 0 ? '2 detections within 0.5 +- 0.1' : 'rare class seen',
      predictions: [
        { box: [60 + i * 10, 80, 300, 200], score: 0.52 + i / 100, classId: 0, label: 'text' },
        { box: [380, 260, 600, 420], score: 0.47, classId: 1, label: 'sign' },
      ],
      frameTs: Date.now() - (count - i) * 60_000,
      bootId: device.bootId,
      seq: 1000 + i,
    });
    await uploadSample(baseUrl, basicAuth(device.id, device.password), metadata, jpeg);
  }
}

const SITES = ['north', 'south', 'harbour'];
export const VIRTUAL_DEVICES = Array.from({ length: 23 }, (_, i) => {
  const hardware = ['rpi5', 'orin-nano'][i % 2]!;
  return {
    id: `cam-${String(i + 1).padStart(2, '0')}`,
    labels: { fleet: 'demo', site: SITES[i % SITES.length]!, hardware },
    hardware,
  };
});
export const FLEET_SIZE = VIRTUAL_DEVICES.length + 2;

export type ConsoleFixture = {
  readonly t: TestControlPlane;
  readonly url: string;
  readonly adminToken: string;
  readonly operatorToken: string;
  readonly viewerToken: string;
  readonly admin: ApiClient;
  readonly fleet: VirtualFleet;
  readonly models: { readonly old: ModelView; readonly candidate: ModelView };
  /** Real MQTT devices: `door` is the one a test disconnects, `gate` answers commands. */
  readonly door: TestDevice;
  readonly gate: TestDevice;
  /** One engine tick, one fleet round, 5 s on the control plane's clock. */
  cycle(): Promise<void>;
  createRollout(): Promise<RolloutView>;
  stop(): Promise<void>;
};

/** Timers that never fire: the fixture drives the rollout engine. */
const manualTimers = { setInterval: () => ({}), clearInterval: () => {} };

export async function startConsoleFixture(dir: string): Promise<ConsoleFixture> {
  const consoleDir = join(dir, 'console-dist');
  await buildConsole(consoleDir);
  const kit: SigningKit = createSigningKit();
  // The control plane's clock starts 10 minutes back, so the windows the fixture drives end near now.
  let now = Date.now() - 10 * 60_000;
  const clock = { now: () => now };
  const t = await startTestControlPlane(
    { trustedKeys: kit.publicKeyPath, http: { consoleDir } },
    { clock, timers: manualTimers },
  );
  try {
    const operatorToken = (await t.createToken('operator', 'console-operator')).secret;
    const viewerToken = (await t.createToken('viewer', 'console-viewer')).secret;
    const register = async (version: string, counter: number) => {
      const bytes = kit.modelBytes(4000 + counter * 1000);
      const signed = await kit.sign(
        bytes,
        { name: 'det', version, adapter: 'yolo' },
        { issuedAt: Date.now() - 3_600_000, ttlMs: 30 * 86_400_000, releaseCounter: counter },
      );
      const uploaded = await t.client.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) });
      if (!uploaded.ok) throw new Error(`upload ${version}: ${uploaded.error.code} ${uploaded.error.message}`);
      return uploaded.value;
    };
    const old = await register('1.0.0', 1);
    const candidate = await register('2.0.0', 2);
    const fleet = createVirtualFleet({
      t,
      devices: VIRTUAL_DEVICES,
      initial: { id: old.id, name: 'det', version: '1.0.0', sha256: old.sha256 },
      behaviour: (sha) =>
        sha === candidate.sha256
          ? { latencyP95: 21, detectionsPer1000: 2950, precision: 0.96, recall: 0.94 }
          : { latencyP95: 20, detectionsPer1000: 3000 },
    });
    await fleet.enroll();

    const realDevice = async (id: string, site: string) => {
      const device = await t.device(id, { labels: { site, hardware: 'x86' } });
      await device.send('status', { state: 'online', reason: 'birth', keepaliveS: 30 });
      // A few telemetry windows for the device page's charts.
      for (let i = 0; i < 6; i++) {
        await device.send('telemetry', {
          ts: Date.now() - (6 - i) * 60_000,
          intervalS: 60,
          system: {
            ...SYSTEM,
            temperatures: { cpuC: 45 + i, gpuC: 40 + i, zones: { 'CPU-therm': 45 + i, 'SOC-therm': 43 + i / 2 } },
            gpu: { loadPct: 30 + i * 5 },
          },
          pipeline: pipelineWindow(60, 25 + (i % 3), 18 + i),
          samples: {
            captured: 10 + i,
            dropped: {},
            uploaded: 8 + i,
            uploadedBytes: 40_000 * (8 + i),
            spooled: 6 - i,
            spooledBytes: 40_000 * (6 - i),
            budgetLeft: { today: 100 - i, bytesToday: null },
            policyError: null,
          },
        });
      }
      return device;
    };
    const door = await realDevice('door-cam', 'north');
    const gate = await realDevice('gate-cam', 'south');
    await uploadSamples(t.started.httpUrl, gate, 4);
    await uploadSamples(t.started.httpUrl, door, 2);
    await gate.answerCommands((command) => ({ ok: true, data: { pong: true, name: command.name } }));

    const cycle = async () => {
      await t.cp.internals.rollouts.engine.tick();
      await fleet.round();
      now += 5_000;
    };
    for (let i = 0; i < 3; i++) await cycle();
    const admin = createApiClient({ baseUrl: t.started.httpUrl, token: t.adminToken });
    return {
      t,
      url: t.started.httpUrl,
      adminToken: t.adminToken,
      operatorToken,
      viewerToken,
      admin,
      fleet,
      models: { old, candidate },
      door,
      gate,
      cycle,
      async createRollout() {
        const created = await createApiClient({ baseUrl: t.started.httpUrl, token: operatorToken }).rollouts.create({
          ...FAST_ROLLOUT,
          modelId: candidate.id,
        });
        if (!created.ok) throw new Error(`create rollout: ${created.error.code} ${created.error.message}`);
        return created.value;
      },
      async stop() {
        await t.stop();
        kit.dispose();
      },
    };
  } catch (error) {
    await t.stop();
    kit.dispose();
    throw error;
  }
}

export type ConsoleBrowser = {
  readonly context: BrowserContext;
  /** Console errors, page errors, failed requests and HTTP errors nobody expected. */
  readonly problems: string[];
  /** Every API path the pages requested (pathname only). */
  readonly apiPaths: Set<string>;
  /** Lets the next matching HTTP error through (a test that provokes one). */
  expectError(status: number, pathname: string): void;
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  close(): Promise<void>;
};

/** Chromium with a fresh profile; every page it opens reports its problems. */
export async function openBrowser(): Promise<ConsoleBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'edgeloop-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 720 },
    timezoneId: 'Europe/Berlin',
    locale: 'en-GB',
  });
  context.setDefaultTimeout(15_000);
  const problems: string[] = [];
  const apiPaths = new Set<string>();
  const expected: { status: number; pathname: string }[] = [];
  const expectedLogs: number[] = [];
  const watch = (page: Page) => {
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      // Chromium logs every HTTP error response: a provoked one is expected here too, once.
      const status = Number(/status of (\d{3})/.exec(message.text())?.[1]);
      const index = expectedLogs.indexOf(status);
      if (index !== -1) expectedLogs.splice(index, 1);
      else problems.push(`console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname.startsWith('/api/')) apiPaths.add(url.pathname);
    });
    page.on('requestfailed', (request) => {
      const url = new URL(request.url());
      // The page cancels its own reads when a view closes (the event stream, a list still loading
      // when the operator moves on): an aborted GET is not a failure. Anything else is.
      if (request.method() === 'GET' && request.failure()?.errorText === 'net::ERR_ABORTED') return;
      problems.push(`request failed: ${request.method()} ${url.pathname}: ${request.failure()?.errorText}`);
    });
    page.on('response', (response) => {
      if (response.status() < 400) return;
      const url = new URL(response.url());
      const index = expected.findIndex((e) => e.status === response.status() && e.pathname === url.pathname);
      if (index !== -1) expected.splice(index, 1);
      else problems.push(`HTTP ${response.status()}: ${response.request().method()} ${url.pathname}`);
    });
  };
  for (const page of context.pages()) watch(page);
  context.on('page', watch);
  return {
    context,
    problems,
    apiPaths,
    expectError(status, pathname) {
      expected.push({ status, pathname });
      expectedLogs.push(status);
    },
    async newPage(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Opens the console and signs in with the token. */
export async function signInAs(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Fleet', level: 1 }).waitFor();
}

/** Matches a request path against the OpenAPI document's path templates (`/api/v1/devices/{id}`). */
export function listedInOpenApi(pathname: string, templates: readonly string[]): boolean {
  return templates.some((template) => {
    const pattern = new RegExp(
      `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`,
    );
    return pattern.test(pathname);
  });
}
