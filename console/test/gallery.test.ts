import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApiClient } from '@edgeloop/protocol';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsoleBrowser,
  type ConsoleFixture,
  chromiumMissing,
  listedInOpenApi,
  openBrowser,
  SAMPLE_SIZE,
  signInAs,
  startConsoleFixture,
} from './console-fixture.ts';

/*
 * The samples gallery, the datasets page, the device page's thermal, load and spool charts and
 * last samples, the fleet table's model filter and the server-counted site view, in real Chromium
 * against the console fixture (six hard samples uploaded by two real devices through the real
 * upload route). Any console error, failed request or HTTP error a test did not provoke fails it.
 */

/** The browser globals the page.evaluate callbacks touch (the root tsconfig has no DOM lib). */
type Img = { complete: boolean; naturalWidth: number };

const missing = chromiumMissing();
if (missing && process.env.CI) throw new Error(`the console tests need Chromium under CI: ${missing}`);
if (missing) console.log(`skipping the gallery tests: ${missing}`);

describe.skipIf(missing !== null)('samples gallery and datasets in Chromium', () => {
  let dir: string;
  let fixture: ConsoleFixture;
  let browser: ConsoleBrowser;
  let page: Page;
  const shot = (name: string, on: Page = page) => on.screenshot({ path: join(dir, 'screenshots', `${name}.png`) });
  const cards = () => page.locator('[data-testid=gallery] [data-sample]');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-gallery-test-'));
    fixture = await startConsoleFixture(dir);
    browser = await openBrowser();
    page = await browser.newPage();
    await signInAs(page, fixture.url, fixture.operatorToken);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await fixture?.stop();
    if (dir) console.log(`gallery screenshots in ${join(dir, 'screenshots')}`);
  });

  afterEach(() => {
    expect(browser.problems.splice(0)).toEqual([]);
  });

  it('shows every sample as a thumbnail with its predicted boxes, class and score, and filters them', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Samples' }).click();
    await expect.poll(() => cards().count()).toBe(6);
    const first = cards().first();
    // Both boxes of the sample, in the image's own pixel space (the SVG's viewBox), with class and score.
    expect(await first.locator('svg.boxes').getAttribute('viewBox')).toBe(
      `0 0 ${SAMPLE_SIZE.width} ${SAMPLE_SIZE.height}`,
    );
    expect(await first.locator('[data-box]').count()).toBe(2);
    expect(await first.locator('[data-box] text').allTextContents()).toEqual([
      expect.stringMatching(/^text 0\.5\d$/),
      'sign 0.47',
    ]);
    // The thumbnails arrive through the typed client (bearer token) and decode.
    await expect
      .poll(() =>
        page
          .locator('[data-testid=gallery] img')
          .evaluateAll((images) => (images as unknown as Img[]).filter((i) => i.complete && i.naturalWidth > 0).length),
      )
      .toBe(6);
    await shot('gallery');

    await page.getByLabel('Device').fill('gate-cam');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => cards().count()).toBe(4);
    await page.getByLabel('Strategy').selectOption('class-rare');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => cards().count()).toBe(1);
    await page.getByLabel('Device').fill('');
    await page.getByLabel('Strategy').selectOption('');
    await page.getByLabel('Site').fill('north');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => cards().count()).toBe(2);
    expect(await cards().allTextContents()).toEqual([
      expect.stringContaining('door-cam'),
      expect.stringContaining('door-cam'),
    ]);
  });

  it('freezes selected samples as a new dataset version, shows name@1, and exports it with progress', async () => {
    await page.getByLabel('Site').fill('');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => cards().count()).toBe(6);
    const ids = await cards().evaluateAll((nodes) =>
      (nodes as unknown as { dataset: { sample: string } }[]).slice(0, 2).map((n) => n.dataset.sample),
    );
    for (const id of ids) await page.getByLabel(`Select sample ${id}`).check();
    expect(await page.getByTestId('selected-count').textContent()).toBe('2 selected');
    await page.getByLabel('Dataset name').fill('hard-cases');
    await page.getByRole('button', { name: 'Create dataset' }).click();
    const created = page.getByTestId('dataset-created');
    await expect.poll(() => created.textContent()).toContain('hard-cases@1');
    expect(await created.textContent()).toContain('with 2 samples');
    expect(await page.getByTestId('selected-count').textContent()).toBe('0 selected');
    const version = await fixture.admin.datasets.get('hard-cases@1');
    expect(version.ok && version.value.counts.total).toBe(2);

    await created.getByRole('link', { name: 'hard-cases@1' }).click();
    const row = page.locator('tr[data-dataset="hard-cases@1"]');
    await row.waitFor();
    expect(await row.locator('td').first().textContent()).toBe('—');
    const download = page.waitForEvent('download');
    await row.getByRole('button', { name: 'Export' }).click();
    const done = row.getByTestId('export-done');
    await done.waitFor();
    expect(await done.textContent()).toMatch(/hard-cases-1-coco\.tar \(\d+(\.\d)? KiB\)/);
    expect((await download).suggestedFilename()).toBe('hard-cases-1-coco.tar');
    await shot('datasets');
  });

  it('shows a viewer the gallery without selection or dataset creation, and the API refuses the viewer', async () => {
    const viewer = await browser.newPage({ width: 390, height: 844 });
    await signInAs(viewer, fixture.url, fixture.viewerToken);
    await viewer.goto(`${fixture.url}/samples`);
    await expect.poll(() => viewer.locator('[data-testid=gallery] [data-sample]').count()).toBe(6);
    expect(await viewer.getByRole('button', { name: 'Create dataset' }).count()).toBe(0);
    expect(await viewer.getByRole('checkbox').count()).toBe(0);
    await shot('gallery-phone', viewer);
    await viewer.goto(`${fixture.url}/datasets`);
    await viewer.locator('tr[data-dataset="hard-cases@1"]').waitFor();
    await viewer.close();
    const refused = await createApiClient({ baseUrl: fixture.url, token: fixture.viewerToken }).datasets.create({
      name: 'nope',
      sampleIds: ['x'],
    });
    expect(refused.ok === false && refused.error.code).toBe('forbidden');
  });

  it('pages the datasets by cursor: Next shows the older versions, Previous comes back to the first page', async () => {
    const samples = await fixture.admin.samples.list({ limit: 2 });
    if (!samples.ok) throw new Error(samples.error.message);
    const sampleIds = samples.value.items.map((sample) => sample.id);
    // 50 more versions: with hard-cases@1, one more than a page of 50.
    for (let i = 0; i < 50; i++) {
      const made = await fixture.admin.datasets.create({ name: 'paged', sampleIds });
      if (!made.ok) throw new Error(made.error.message);
    }
    await page.goto(`${fixture.url}/datasets`);
    const rows = page.locator('[data-testid=dataset-table] tbody tr');
    const pager = page.getByRole('navigation', { name: 'Pages' });
    const previous = pager.getByRole('button', { name: '← Previous' });
    const next = pager.getByRole('button', { name: 'Next →' });
    await expect.poll(() => rows.count()).toBe(50);
    expect(await pager.locator('span').textContent()).toBe('Page 1');
    expect(await previous.isDisabled()).toBe(true);
    await next.click();
    await expect.poll(() => pager.locator('span').textContent()).toBe('Page 2');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await next.isDisabled()).toBe(true);
    await previous.click();
    await expect.poll(() => pager.locator('span').textContent()).toBe('Page 1');
    await expect.poll(() => rows.count()).toBe(50);
    expect(await previous.isDisabled()).toBe(true);
  });

  it("charts a device's temperatures with every thermal zone, CPU and GPU load and its sample spool, beside its last samples", async () => {
    await page.goto(`${fixture.url}/devices/gate-cam`);
    await page.getByRole('heading', { name: 'gate-cam', level: 1 }).waitFor();
    const chart = (name: string) => page.getByRole('img', { name, exact: true });
    for (const name of [
      'fps and inference p95 (ms)',
      'Temperatures (°C)',
      'CPU and GPU load (%)',
      'Hard samples waiting to upload (spool)',
    ]) {
      await chart(name).locator('canvas').waitFor();
    }
    const legend = await chart('Temperatures (°C)').locator('.u-legend .u-label').allTextContents();
    expect(legend).toEqual(expect.arrayContaining(['CPU °C', 'GPU °C', 'CPU-therm °C', 'SOC-therm °C']));
    expect(await chart('CPU and GPU load (%)').locator('.u-legend .u-label').allTextContents()).toEqual(
      expect.arrayContaining(['CPU load %', 'GPU load %']),
    );
    const samples = page.locator('[data-testid=device-samples] [data-sample]');
    await expect.poll(() => samples.count()).toBe(4);
    expect(await samples.first().locator('[data-box]').count()).toBe(2);
    await page.getByTestId('device-samples').scrollIntoViewIfNeeded();
    await shot('device-charts');
  });

  it('filters the fleet table by the active model, and counts the sites on the server', async () => {
    await page.goto(fixture.url);
    await page.getByLabel('Model').fill('det@1.0.0');
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.locator('[data-testid=device-table] tbody tr');
    // The 23 virtual devices run det@1.0.0; the two real ones report no model.
    await expect.poll(() => rows.count()).toBe(23);
    expect(await page.locator('tr[data-device=gate-cam]').count()).toBe(0);

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sites' }).click();
    const north = page.locator('tr[data-site=north] td');
    await expect.poll(() => north.allTextContents()).toEqual(['9', '9', '0', '0', '0']);
    expect(await page.locator('[data-testid=site-table] tbody tr').count()).toBe(3);
  });

  it('brings the rows to the server state after a burst of status events from two devices', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Fleet' }).click();
    const status = (id: string) => page.locator(`tr[data-device=${id}] [data-status]`);
    await status('gate-cam').waitFor();
    await page.locator('.live-live').waitFor();
    // door goes offline, then gate flips every few ms: the batches after the door's must keep its
    // change. (The bench's 100-device burst is what caught patches applied to a stale page.)
    await fixture.door.send('status', { state: 'offline', reason: 'shutdown' });
    for (let i = 0; i < 21; i++) {
      const state = i % 2 === 0 ? 'offline' : 'online';
      void fixture.gate.send('status', { state, reason: state === 'online' ? 'birth' : 'shutdown' });
      await new Promise((resolve) => setTimeout(resolve, 6));
    }
    await expect.poll(() => status('door-cam').getAttribute('data-status'), { timeout: 10_000 }).toBe('offline');
    await expect.poll(() => status('gate-cam').getAttribute('data-status'), { timeout: 10_000 }).toBe('offline');
    const server = await fixture.admin.devices.get('gate-cam');
    expect(server.ok && server.value.device.status).toBe('offline');
  });

  it('calls only routes the OpenAPI document lists', async () => {
    const doc = (await (await fetch(`${fixture.url}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    const templates = Object.keys(doc.paths);
    for (const path of ['/api/v1/samples', '/api/v1/datasets', '/api/v1/fleet/sites']) {
      expect(browser.apiPaths.has(path)).toBe(true);
    }
    expect([...browser.apiPaths].filter((path) => !listedInOpenApi(path, templates))).toEqual([]);
  });
});
