import { describe, expect, it } from 'vitest';
import { parseRoute, pathOf, tokenFromHash } from './route.ts';

describe('parseRoute', () => {
  it('maps every console path to its page and back', () => {
    const paths = ['/', '/devices/cam%2F1', '/rollouts', '/rollouts/r-1', '/models', '/sites', '/samples', '/datasets'];
    expect(paths.map(parseRoute)).toEqual([
      { page: 'fleet' },
      { page: 'device', id: 'cam/1' },
      { page: 'rollouts' },
      { page: 'rollout', id: 'r-1' },
      { page: 'models' },
      { page: 'sites' },
      { page: 'samples' },
      { page: 'datasets' },
    ]);
    expect(paths.map((path) => pathOf(parseRoute(path)))).toEqual(paths);
  });

  it('answers not-found for a path no page has', () => {
    expect(parseRoute('/devices/a/b')).toEqual({ page: 'not-found', path: '/devices/a/b' });
    expect(parseRoute('/nope')).toEqual({ page: 'not-found', path: '/nope' });
  });
});

describe('tokenFromHash', () => {
  it('reads the token npm start puts in the fragment', () => {
    expect(tokenFromHash('#token=abc123')).toBe('abc123');
    expect(tokenFromHash('#other=1')).toBeNull();
    expect(tokenFromHash('')).toBeNull();
  });
});
