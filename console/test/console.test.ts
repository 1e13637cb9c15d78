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
  FLEET_SIZE,
  listedInOpenApi,
  openBrowser,
  signInAs,
  startConsoleFixture,
} from './console-fixture.ts';

/*
 * The operator console in real Chromium (Debian's, driven by playwright-core) against a real
 * control plane serving the console built from source. Any console error, page error, failed
 * request or HTTP error a test did not provoke fails the test. Screenshots of every page land
 * in the test's temp folder.
 */

/** The browser globals the page.evaluate callbacks touch (the root tsconfig has no DOM lib). */
type Browser = {
  sessionStorage: { getItem(key: string): string | null };
  marker?: number;
  innerWidth: number;
  document: { documentElement: { scrollWidth: number }; activeElement: { textContent: string | null } | null };
};

const missing = chromiumMissing();
if (missing && process.env.CI) throw new Error(`the console tests need Chromium under CI: ${missing}`);
if (missing) console.log(`skipping the console tests: ${missing}`);

describe.skipIf(missing !== null)('operator console in Chromium', () => {
  let dir: string;
  let fixture: ConsoleFixture;
  let browser: ConsoleBrowser;
  let page: Page;
  const shot = (name: string, on: Page = page) => on.screenshot({ path: join(dir, 'screenshots', `${name}.png`) });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-console-test-'));
    fixture = await startConsoleFixture(dir);
    browser = await openBrowser();
    page = await browser.newPage();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await fixture?.stop();
    if (dir) console.log(`console screenshots in ${join(dir, 'screenshots')}`);
  });

  afterEach(() => {
    // Each test owns the problems it caused.
    expect(browser.problems.splice(0)).toEqual([]);
  });

  it('refuses a wrong token and signs in with the right one', async () => {
    await page.goto(fixture.url);
    await shot('sign-in');
    browser.expectError(401, '/api/v1/tokens/self');
    await page.getByLabel('API token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('not valid');

    await page.getByLabel('API token').fill(fixture.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Fleet', level: 1 }).waitFor();
    expect(await page.getByTestId('who').textContent()).toContain('(admin)');
    expect(await page.evaluate(() => (globalThis as unknown as Browser).sessionStorage.getItem('edgeloop.token'))).toBe(
      fixture.adminToken,
    );
  });

  it('shows every device of the fleet with its status in words', async () => {
    const rows = page.locator('[data-testid=device-table] tbody tr');
    await expect.poll(() => rows.count()).toBe(FLEET_SIZE);
    expect(await page.getByTestId('count-online').textContent()).toContain(String(FLEET_SIZE));
    expect(await page.locator('tr[data-device=door-cam] [data-status]').textContent()).toContain('online');
    await page.locator('.live-live').waitFor();
    await shot('fleet');
  });

  it('turns a row offline when its device disconnects, without a reload', async () => {
    await page.evaluate(() => {
      (globalThis as unknown as Browser).marker = 42;
    });
    await fixture.door.client.endAsync();
    const status = page.locator('tr[data-device=door-cam] [data-status]');
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 10_000 }).toBe('offline');
    expect(await status.textContent()).toContain('offline');
    await expect.poll(() => page.getByTestId('count-offline').textContent()).toContain('1');
    expect(await page.evaluate(() => (globalThis as unknown as Browser).marker)).toBe(42);
  });

  it('filters the table by status and by site', async () => {
    await page.getByLabel('Status').selectOption('offline');
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.locator('[data-testid=device-table] tbody tr');
    await expect.poll(() => rows.count()).toBe(1);
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Site').fill('harbour');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(async () => (await rows.allTextContents()).every((text) => text.includes('harbour'))).toBe(true);
    expect(await rows.count()).toBeGreaterThan(0);
  });

  it('opens a device with its telemetry chart and shows the reply to a ping', async () => {
    await page.goto(`${fixture.url}/devices/gate-cam`);
    await page.getByRole('heading', { name: 'gate-cam', level: 1 }).waitFor();
    await page.locator('.chart canvas').first().waitFor();
    await expect.poll(() => page.getByTestId('log-status').textContent()).toContain('online (birth)');
    await page.getByLabel('Name').fill('ping');
    await page.getByRole('button', { name: 'Send' }).click();
    const reply = page.getByTestId('command-reply');
    await expect.poll(() => reply.textContent(), { timeout: 12_000 }).toContain('"pong": true');
    await shot('device');
  });

  it('plans a rollout with the dry-run form, shows its cohorts before creating it, then starts it', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Rollouts' }).click();
    await page.getByLabel('Model').selectOption(fixture.models.candidate.id);
    await page.getByLabel('Devices with labels').fill('fleet=demo');
    await page.getByRole('button', { name: 'Plan (dry run)' }).click();
    const plan = page.getByTestId('plan');
    await expect.poll(() => plan.textContent()).toContain('23 target devices');
    expect(await plan.textContent()).toMatch(/Canary: cam-\d\d/);
    await shot('rollout-plan');
    // Planning created nothing.
    expect(await fixture.admin.rollouts.list()).toEqual({ ok: true, value: { items: [], nextCursor: null } });

    await page.getByRole('button', { name: 'Start' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Yes, start' }).click();
    await page.locator('[data-testid=stages] li').first().waitFor();
    const list = await fixture.admin.rollouts.list();
    expect(list.ok && list.value.items).toHaveLength(1);
    expect(new URL(page.url()).pathname).toBe(`/rollouts/${list.ok ? list.value.items[0]!.id : ''}`);
    // Out of the way of the next test's rollout.
    expect((await fixture.admin.rollouts.act(list.ok ? list.value.items[0]!.id : '', 'abort')).ok).toBe(true);
  });

  it('shows a rollout created by the API with its stages and last verdict, and aborts it after a confirmation', async () => {
    const rollout = await fixture.createRollout();
    for (let i = 0; i < 6; i++) await fixture.cycle();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Rollouts' }).click();
    await page.locator(`tr[data-rollout="${rollout.id}"]`).waitFor();
    await shot('rollouts');
    await page.getByRole('link', { name: rollout.id }).click();
    const stages = page.locator('[data-testid=stages] li');
    await expect.poll(() => stages.count()).toBe(4);
    expect(await stages.allTextContents()).toEqual([
      expect.stringContaining('shadow'),
      expect.stringContaining('canary'),
      expect.stringContaining('50%'),
      expect.stringContaining('100%'),
    ]);
    await page.getByTestId('gates').waitFor();
    await shot('rollout');

    await page.getByRole('button', { name: 'Abort' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Reason').fill('console test');
    await dialog.getByRole('button', { name: 'Yes, abort' }).click();
    await expect.poll(() => page.locator('h1 [data-state]').getAttribute('data-state')).toBe('aborted');
    expect(await page.getByTestId('rollout-actions').count()).toBe(0);
    const after = await fixture.admin.rollouts.get(rollout.id);
    expect(after.ok && after.value.status).toBe('aborted');
  });

  it('shows a viewer no mutating buttons, and the API refuses the viewer anyway', async () => {
    const running = await (async () => {
      // The aborted rollout released its devices: a new one can start.
      const created = await fixture.createRollout();
      return created;
    })();
    const viewer = await browser.newPage({ width: 390, height: 844 });
    await signInAs(viewer, fixture.url, fixture.viewerToken);
    expect(await viewer.getByTestId('who').textContent()).toContain('(viewer)');
    await shot('fleet-phone', viewer);
    const overflow = await viewer.evaluate(() => {
      const w = globalThis as unknown as Browser;
      return w.document.documentElement.scrollWidth - w.innerWidth;
    });
    expect(overflow).toBeLessThanOrEqual(0);

    await viewer.goto(`${fixture.url}/rollouts/${running.id}`);
    await viewer.locator('[data-testid=stages] li').first().waitFor();
    expect(await viewer.getByRole('button', { name: 'Abort' }).count()).toBe(0);
    expect(await viewer.getByRole('button', { name: 'Pause' }).count()).toBe(0);
    await viewer.goto(`${fixture.url}/devices/gate-cam`);
    await viewer.getByRole('heading', { name: 'gate-cam', level: 1 }).waitFor();
    expect(await viewer.getByRole('button', { name: 'Send' }).count()).toBe(0);
    await shot('rollout-viewer', viewer);

    const refused = await createApiClient({ baseUrl: fixture.url, token: fixture.viewerToken }).rollouts.act(
      running.id,
      'abort',
    );
    expect(refused.ok === false && refused.error.code).toBe('forbidden');
    await viewer.close();
  });

  it('groups the devices by site', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sites' }).click();
    const north = page.locator('tr[data-site=north] td');
    // 8 virtual devices in the north, and door-cam, offline since the test above.
    await expect.poll(() => north.allTextContents()).toEqual(['9', '8', '1', '0', '0']);
    expect(await page.locator('[data-testid=site-table] tbody tr').count()).toBe(3);
    await shot('sites');
  });

  it('lists the models with signature, size and hardware', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Models' }).click();
    const rows = page.locator('[data-testid=model-table] tbody tr');
    await expect.poll(() => rows.count()).toBe(2);
    expect(await rows.first().textContent()).toContain('det@');
    await shot('models');
  });

  it('is keyboard navigable: Tab reaches the main links and Enter follows them', async () => {
    await page.goto(fixture.url);
    await page.getByRole('heading', { name: 'Fleet', level: 1 }).waitFor();
    const focused: string[] = [];
    for (let i = 0; i < 6; i++) {
      await page.keyboard.press('Tab');
      focused.push(
        await page.evaluate(() => (globalThis as unknown as Browser).document.activeElement?.textContent?.trim() ?? ''),
      );
    }
    expect(focused).toEqual(expect.arrayContaining(['Skip to content', 'Fleet', 'Rollouts', 'Models']));
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Rollouts' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Rollouts', level: 1 }).waitFor();
  });

  it('calls only routes the OpenAPI document lists', async () => {
    const response = await fetch(`${fixture.url}/api/v1/openapi.json`);
    const doc = (await response.json()) as { paths: Record<string, unknown> };
    const templates = Object.keys(doc.paths);
    expect(browser.apiPaths.size).toBeGreaterThan(5);
    const unlisted = [...browser.apiPaths].filter((path) => !listedInOpenApi(path, templates));
    expect(unlisted).toEqual([]);
  });
});
