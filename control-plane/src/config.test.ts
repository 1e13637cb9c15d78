import { describe, expect, it } from 'vitest';
import { ConfigError, describeSettings, loadConfig, SETTINGS } from './config.ts';

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives the documented defaults with no flags and no environment', () => {
    const config = loadConfig();
    expect(config).toMatchObject({
      httpPort: 8080,
      mqttPort: 1883,
      host: '0.0.0.0',
      dataDir: './data',
      logLevel: 'info',
    });
    expect(config.adminToken).toBeUndefined();
    expect(config.ingest.batchSize).toBeGreaterThan(0);
    expect(config.ingest.batchSize).toBeLessThanOrEqual(500);
    expect(config.retention.messagesDays).toBeGreaterThan(0);
  });

  it('reads flags in both forms, the environment, and lets flags win', () => {
    const config = loadConfig({
      argv: ['--http-port', '9090', '--mqtt-port=0', '--data-dir', '/tmp/x', '--ingest-batch-size', '128'],
      env: {
        EDGELOOP_HTTP_PORT: '7070',
        EDGELOOP_HOST: '127.0.0.1',
        EDGELOOP_ADMIN_TOKEN: 'a-long-enough-admin-token',
      },
    });
    expect(config.httpPort).toBe(9090);
    expect(config.mqttPort).toBe(0);
    expect(config.host).toBe('127.0.0.1');
    expect(config.dataDir).toBe('/tmp/x');
    expect(config.adminToken).toBe('a-long-enough-admin-token');
    expect(config.ingest.batchSize).toBe(128);
  });

  it('accepts port 0 so tests can bind any free port', () => {
    expect(loadConfig({ argv: ['--http-port', '0', '--mqtt-port', '0'] })).toMatchObject({ httpPort: 0, mqttPort: 0 });
  });

  it('lists every problem at once', () => {
    const problems = problemsOf(() =>
      loadConfig({
        argv: ['--http-port', '70000', '--bogus', '1', '--log-level', 'loud', '--mqtt-port'],
        env: { EDGELOOP_INGEST_BATCH_SIZE: '-3', EDGELOOP_ADMIN_TOKEN: 'short' },
      }),
    );
    expect(problems.some((p) => p.includes('--http-port'))).toBe(true);
    expect(problems.some((p) => p.includes('unknown flag --bogus'))).toBe(true);
    expect(problems.some((p) => p.includes('--log-level'))).toBe(true);
    expect(problems.some((p) => p.includes('--mqtt-port needs a value'))).toBe(true);
    expect(problems.some((p) => p.includes('EDGELOOP_INGEST_BATCH_SIZE'))).toBe(true);
    expect(problems.some((p) => p.includes('EDGELOOP_ADMIN_TOKEN'))).toBe(true);
    expect(problems.length).toBeGreaterThanOrEqual(6);
  });

  it('refuses a hard cap below the high-water mark', () => {
    const problems = problemsOf(() => loadConfig({ overrides: { ingest: { highWater: 100, hardCap: 10 } } }));
    expect(problems).toEqual(['--ingest-hard-cap must not be below --ingest-high-water']);
  });

  it('returns a deeply frozen object', () => {
    const config = loadConfig({ overrides: { health: { heartbeatGraceS: 2 } } });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.health)).toBe(true);
    expect(config.health.heartbeatGraceS).toBe(2);
    expect(config.health.highTemperatureC).toBe(85);
  });

  it('documents every setting with its flag and variable', () => {
    const help = describeSettings();
    for (const setting of SETTINGS) {
      if (setting.flag) expect(help).toContain(setting.flag);
      expect(help).toContain(setting.env);
    }
    // The admin token is a secret: environment only, never a flag that `ps` would show.
    expect(SETTINGS.find((s) => s.env === 'EDGELOOP_ADMIN_TOKEN')?.flag).toBeNull();
    expect(() => loadConfig({ argv: ['--admin-token', 'x'.repeat(20)] })).toThrow(/unknown flag --admin-token/);
    expect(help).toContain('--mqtt-port');
    expect(help).toContain('EDGELOOP_DATA_DIR');
  });
});

describe('loadConfig: an external broker', () => {
  const password = { EDGELOOP_BROKER_PASSWORD: 'broker-password-0123456789' };

  it('reads --broker-url with the password from the environment, defaults for the rest', () => {
    const config = loadConfig({ argv: ['--broker-url', 'mqtt://mosquitto.internal:1883'], env: password });
    expect(config).toMatchObject({
      brokerUrl: 'mqtt://mosquitto.internal:1883',
      brokerUsername: 'edgeloop',
      brokerPassword: 'broker-password-0123456789',
      brokerAuth: 'dynsec',
    });
    expect(config.replicaId).toBeUndefined();
    expect(config.brokerPublicUrl).toBeUndefined();
  });

  it('takes every broker setting from flags or the environment', () => {
    const config = loadConfig({
      argv: ['--broker-username', 'cp', '--replica-id=replica-2', '--broker-public-url', 'mqtts://broker.example:8883'],
      env: {
        ...password,
        EDGELOOP_BROKER_URL: 'mqtt://10.0.0.5:1884',
        EDGELOOP_BROKER_AUTH: 'http-hooks',
        EDGELOOP_BROKER_HOOK_SECRET: 'hook-secret-0123456789abcdef',
      },
    });
    expect(config).toMatchObject({
      brokerUrl: 'mqtt://10.0.0.5:1884',
      brokerUsername: 'cp',
      replicaId: 'replica-2',
      brokerPublicUrl: 'mqtts://broker.example:8883',
      brokerAuth: 'http-hooks',
    });
  });

  it('never takes the broker password from a flag', () => {
    expect(SETTINGS.find((s) => s.env === 'EDGELOOP_BROKER_PASSWORD')?.flag).toBeNull();
    const problems = problemsOf(() =>
      loadConfig({ argv: ['--broker-url', 'mqtt://b:1883', '--broker-password', 'broker-password-0123456789'] }),
    );
    expect(problems).toContain('unknown flag --broker-password');
  });

  it('refuses --broker-url without EDGELOOP_BROKER_PASSWORD, naming the variable', () => {
    const problems = problemsOf(() => loadConfig({ argv: ['--broker-url', 'mqtt://b:1883'] }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/--broker-url needs .*EDGELOOP_BROKER_PASSWORD/);
  });

  it('refuses URLs that are not plain mqtt://host:port, and a public URL without the broker URL', () => {
    for (const url of ['http://b:1883', 'mqtts://b:8883', 'mqtt://b:1883/path', 'b:1883']) {
      const problems = problemsOf(() => loadConfig({ argv: ['--broker-url', url], env: password }));
      expect(problems.some((p) => p.startsWith('--broker-url / EDGELOOP_BROKER_URL: the broker URL must be'))).toBe(
        true,
      );
    }
    expect(problemsOf(() => loadConfig({ argv: ['--broker-public-url', 'mqtt://b:1883'] }))).toEqual([
      '--broker-public-url needs --broker-url',
    ]);
    expect(
      problemsOf(() =>
        loadConfig({ argv: ['--broker-url', 'mqtt://b:1883', '--broker-public-url', 'ws://b'], env: password }),
      )[0],
    ).toMatch(/the broker public URL must be/);
  });

  it('refuses the MQTT TLS listener, a bad replica id, and http-hooks without the hook secret', () => {
    const problems = problemsOf(() =>
      loadConfig({
        argv: ['--broker-url', 'mqtt://b:1883', '--broker-auth', 'http-hooks', '--mqtt-tls-port', '8883'],
        env: password,
        overrides: { tlsCert: '/tmp/c.pem', tlsKey: '/tmp/k.pem' },
      }),
    );
    expect(problems).toEqual([
      "--mqtt-tls-port is the embedded broker's TLS listener, which is off with --broker-url",
      '--broker-auth http-hooks needs EDGELOOP_BROKER_HOOK_SECRET (the secret the broker sends to the hooks)',
    ]);
    expect(problemsOf(() => loadConfig({ argv: ['--replica-id', 'a b/c'] }))[0]).toMatch(/replica id is 1-64/);
    expect(problemsOf(() => loadConfig({ argv: ['--broker-auth', 'ldap'] }))[0]).toMatch(/^--broker-auth/);
  });
});
