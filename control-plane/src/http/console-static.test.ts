import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { afterAll, describe, expect, it } from 'vitest';
import { consoleHandler, resolveConsolePath } from './console-static.ts';

describe('resolveConsolePath', () => {
  it('maps files, falls back to index.html for browser routes, and refuses /api and escapes', () => {
    expect(resolveConsolePath('/srv/c', '/assets/app-1.js')).toEqual({ kind: 'file', path: '/srv/c/assets/app-1.js' });
    expect(resolveConsolePath('/srv/c', '/')).toEqual({ kind: 'index' });
    expect(resolveConsolePath('/srv/c', '/devices/cam-1')).toEqual({ kind: 'index' });
    expect(resolveConsolePath('/srv/c', '/api/v1/devices')).toEqual({ kind: 'none' });
    expect(resolveConsolePath('/srv/c', '/%2e%2e/%2e%2e/etc/passwd.txt')).toEqual({ kind: 'none' });
    expect(resolveConsolePath('/srv/c', '/%E0%A4%A')).toEqual({ kind: 'none' });
  });
});

describe('consoleHandler', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeloop-console-'));
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>console</title>');
  writeFileSync(join(dir, 'assets', 'app-abc.js'), 'console.log(1)');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const appOf = (consoleDir: string) => {
    const app = new Hono();
    app.get('/api/v1/known', (c) => c.json({ ok: true }));
    app.on(['GET', 'HEAD'], '*', consoleHandler({ dir: consoleDir }));
    app.notFound((c) => c.json({ error: { code: 'not_found', message: 'no route' } }, 404));
    return app;
  };

  it('serves index.html at / and for browser routes, and hashed assets as immutable', async () => {
    const app = appOf(dir);
    const index = await app.request('/rollouts/r1');
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await index.text()).toContain('<title>console</title>');
    const asset = await app.request('/assets/app-abc.js');
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(asset.headers.get('cache-control')).toContain('immutable');
    expect(await asset.text()).toBe('console.log(1)');
  });

  it('leaves /api paths and missing files to the JSON 404', async () => {
    const app = appOf(dir);
    expect((await app.request('/api/v1/known')).status).toBe(200);
    const unknown = await app.request('/api/v1/nope');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: { code: 'not_found', message: 'no route' } });
    expect((await app.request('/assets/missing.js')).status).toBe(404);
  });

  it('answers 503 with how to build it when the console was not built', async () => {
    const response = await appOf(join(dir, 'absent')).request('/');
    expect(response.status).toBe(503);
    expect(await response.text()).toContain('npm run build -w @edgeloop/console');
  });
});
