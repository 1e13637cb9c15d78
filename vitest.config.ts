import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/data/**'],
    // Probes PostgreSQL and Mosquitto once: suites that need an unreachable one are skipped with a
    // printed reason, and under CI=true the run fails instead.
    globalSetup: ['./vitest.global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: integration tests start brokers and child processes, so keep parallelism modest.
    maxWorkers: 2,
  },
});
