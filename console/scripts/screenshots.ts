import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumMissing, openBrowser, signInAs, startConsoleFixture } from '../test/console-fixture.ts';

/*
 * `npm run screenshots`: the README's pictures of the console, taken by the Chromium tests' own
 * fixture (a real control plane, 25 devices, a rollout past its first verdict) into
 * docs/screenshots/fleet.png, rollout.png and gallery.png (the samples gallery with its boxes).
 */

const missing = chromiumMissing();
if (missing) {
  console.error(`cannot take screenshots: ${missing}`);
  process.exit(1);
}
const out = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
mkdirSync(out, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'edgeloop-screenshots-'));
const fixture = await startConsoleFixture(dir);
const browser = await openBrowser();
try {
  const rollout = await fixture.createRollout();
  for (let i = 0; i < 6; i++) await fixture.cycle();
  const page = await browser.newPage({ width: 1280, height: 800 });
  await signInAs(page, fixture.url, fixture.operatorToken);
  await page.locator('[data-testid=device-table] tbody tr').nth(24).waitFor();
  await page.locator('.live-live').waitFor();
  await page.screenshot({ path: join(out, 'fleet.png') });
  await page.goto(`${fixture.url}/rollouts/${rollout.id}`);
  await page.getByTestId('gates').waitFor();
  await page.screenshot({ path: join(out, 'rollout.png'), fullPage: true });
  await page.goto(`${fixture.url}/samples`);
  await page.locator('[data-testid=gallery] [data-sample]').nth(5).waitFor();
  await page.waitForFunction(() => {
    const images = (
      globalThis as unknown as {
        document: { querySelectorAll(s: string): ArrayLike<{ complete: boolean; naturalWidth: number }> };
      }
    ).document.querySelectorAll('[data-testid=gallery] img');
    return images.length === 6 && Array.from(images).every((image) => image.complete && image.naturalWidth > 0);
  });
  await page.screenshot({ path: join(out, 'gallery.png') });
  if (browser.problems.length > 0) throw new Error(`the console reported problems:\n${browser.problems.join('\n')}`);
  console.log(`wrote ${join(out, 'fleet.png')}, ${join(out, 'rollout.png')} and ${join(out, 'gallery.png')}`);
} finally {
  await browser.close();
  await fixture.stop();
  rmSync(dir, { recursive: true, force: true });
}
