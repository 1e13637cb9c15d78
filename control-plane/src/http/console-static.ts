import { readFile, stat } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';
import type { Context, Next } from 'hono';

/*
 * The operator console's built files (console/dist), served at `/` from the API's own port. The
 * control plane never imports the console package: it serves whatever folder it is given. Paths
 * without a file extension fall back to index.html (the console routes in the browser); /api/*
 * is never the console's.
 */

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

export type ConsolePath =
  | { readonly kind: 'file'; readonly path: string }
  /** A browser route (no extension): answer index.html. */
  | { readonly kind: 'index' }
  /** Not the console's: /api/*, or a path that would leave the folder. */
  | { readonly kind: 'none' };

/** Where a request path lands in the console folder (pure: no file system). */
export function resolveConsolePath(dir: string, urlPath: string): ConsolePath {
  if (urlPath === '/api' || urlPath.startsWith('/api/')) return { kind: 'none' };
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return { kind: 'none' };
  }
  if (decoded.includes('\0')) return { kind: 'none' };
  const root = resolve(dir);
  const path = resolve(root, `.${decoded.startsWith('/') ? '' : '/'}${decoded}`);
  if (path !== root && !path.startsWith(root + sep)) return { kind: 'none' };
  if (path === root || decoded.endsWith('/')) return { kind: 'index' };
  if (extname(path) === '') return { kind: 'index' };
  return { kind: 'file', path };
}

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edgeloop console not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>The edgeloop console is not built</h1>
<p>The API works (see <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>), but there is no console to show.
Build it with <code>npm run build -w @edgeloop/console</code> (<code>npm install</code> does it), or point
<code>--http-console-dir</code> at a built console.</p></body></html>`;

/** A Hono handler for GET and HEAD: the console's files, or `next()` for what is not the console's. */
export function consoleHandler(deps: { readonly dir: string }) {
  const indexPath = deps.dir ? resolve(deps.dir, 'index.html') : null;

  const send = async (c: Context, path: string, cache: string): Promise<Response | null> => {
    try {
      const info = await stat(path);
      if (!info.isFile()) return null;
      const type = CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
      const headers = { 'content-type': type, 'cache-control': cache, 'x-content-type-options': 'nosniff' };
      if (c.req.method === 'HEAD') return c.body(null, 200, { ...headers, 'content-length': String(info.size) });
      return c.body(new Uint8Array(await readFile(path)), 200, headers);
    } catch {
      return null;
    }
  };

  return async (c: Context, next: Next): Promise<Response | undefined> => {
    const target = deps.dir ? resolveConsolePath(deps.dir, c.req.path) : null;
    if (target?.kind === 'none' || (target === null && c.req.path.startsWith('/api/'))) {
      await next();
      return undefined;
    }
    if (target?.kind === 'file') {
      // Vite names assets by content hash: they never change under one name.
      const cache = target.path.includes(`${sep}assets${sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache';
      const file = await send(c, target.path, cache);
      if (file) return file;
      // A missing file with an extension is a plain 404, not the app.
      await next();
      return undefined;
    }
    const index = indexPath ? await send(c, indexPath, 'no-cache') : null;
    return index ?? c.html(NOT_BUILT, 503);
  };
}
