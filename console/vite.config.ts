import { defineConfig } from 'vite';

/*
 * The operator console: Preact components in TSX, compiled by Vite's own transform (Oxc) with
 * Preact's automatic JSX runtime, so no Babel preset is needed. The output (dist/) is served by
 * `edgeloop serve` at `/`; it is built by `npm install` and never committed.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  resolve: { alias: { react: 'preact/compat', 'react-dom': 'preact/compat' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 400,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080', '/healthz': 'http://127.0.0.1:8080' } },
});
