import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { diffConfig, loadConfig } from './config.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const minimal = {
  deviceId: 'cam-001',
  mqtt: { url: 'mqtt://broker.local:1883', password: 'secret' },
  dataDir: '/var/lib/edgeloop',
};

function problemsOf(result: ReturnType<typeof loadConfig>): string[] {
  if (result.ok) throw new Error('expected a failure');
  return result.error.problems.map((problem) => `${problem.path}: ${problem.message}`);
}

describe('loadConfig', () => {
  it('fills every default around a minimal file', () => {
    const result = loadConfig({ fileText: JSON.stringify(minimal), env: {} });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value).toMatchObject({
      deviceId: 'cam-001',
      mqtt: {
        url: 'mqtt://broker.local:1883',
        username: 'cam-001',
        password: 'secret',
        keepaliveS: 30,
        connectTimeoutMs: 10_000,
        reconnect: { initialMs: 500, maxMs: 30_000, jitter: 0.5 },
        maxInflight: 32,
      },
      telemetry: { intervalS: 10 },
      outbox: { maxBytes: 8 * 1024 * 1024, fsync: 'always' },
      hardware: { sysfsRoot: '/' },
      logLevel: 'info',
    });
  });

  it('returns a deeply frozen config', () => {
    const result = loadConfig({ fileText: JSON.stringify(minimal), env: {} });
    if (!result.ok) throw new Error('expected ok');
    expect(Object.isFrozen(result.value)).toBe(true);
    expect(Object.isFrozen(result.value.mqtt.reconnect)).toBe(true);
    expect(() => {
      (result.value.mqtt as { keepaliveS: number }).keepaliveS = 1;
    }).toThrow();
  });

  it('lists every problem with its path, not just the first', () => {
    const result = loadConfig({
      fileText: JSON.stringify({
        deviceId: '__proto__',
        mqtt: { url: 'http://broker', keepaliveS: 0, reconnect: { jitter: 2 } },
        telemetry: { intervalS: -1 },
        outbox: { fsync: 'sometimes' },
        logLevel: 'loud',
        colour: 'blue',
      }),
      env: {},
    });
    const problems = problemsOf(result);
    const paths = problems.map((problem) => problem.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'deviceId',
        'mqtt.url',
        'mqtt.keepaliveS',
        'mqtt.reconnect.jitter',
        'telemetry.intervalS',
        'outbox.fsync',
        'logLevel',
        'dataDir',
        'mqtt.password',
        '(root)',
      ]),
    );
    expect(problems.find((problem) => problem.startsWith('mqtt.url'))).toMatch(/mqtt:\/\/ or mqtts:\/\//);
    expect(problems.length).toBeGreaterThanOrEqual(10);
  });

  it('refuses a config without any MQTT password', () => {
    const { password: _password, ...mqtt } = minimal.mqtt;
    const problems = problemsOf(loadConfig({ fileText: JSON.stringify({ ...minimal, mqtt }), env: {} }));
    expect(problems).toEqual([expect.stringMatching(/^mqtt\.password: .*anonymous/)]);
  });

  it('lets environment variables override the file', () => {
    const result = loadConfig({
      fileText: JSON.stringify(minimal),
      env: {
        EDGELOOP_DEVICE_ID: 'cam-002',
        EDGELOOP_MQTT_URL: 'mqtts://other:8883',
        EDGELOOP_MQTT_USERNAME: 'user-x',
        EDGELOOP_MQTT_PASSWORD: 'from-env',
        EDGELOOP_CONTROL_PLANE_URL: 'https://cp.example',
        EDGELOOP_DATA_DIR: '/data/edge',
        EDGELOOP_TELEMETRY_INTERVAL_S: '2.5',
        EDGELOOP_LOG_LEVEL: 'debug',
      },
    });
    if (!result.ok) throw new Error(JSON.stringify(result.error));
    expect(result.value).toMatchObject({
      deviceId: 'cam-002',
      mqtt: { url: 'mqtts://other:8883', username: 'user-x', password: 'from-env' },
      controlPlaneUrl: 'https://cp.example',
      dataDir: '/data/edge',
      telemetry: { intervalS: 2.5 },
      logLevel: 'debug',
    });
  });

  it('names the environment variable behind a bad value', () => {
    const problems = problemsOf(
      loadConfig({ fileText: JSON.stringify(minimal), env: { EDGELOOP_TELEMETRY_INTERVAL_S: 'often' } }),
    );
    expect(problems).toEqual([expect.stringMatching(/^telemetry\.intervalS \(from EDGELOOP_TELEMETRY_INTERVAL_S\)/)]);
  });

  it('builds a whole config from the environment alone', () => {
    const result = loadConfig({
      env: {
        EDGELOOP_DEVICE_ID: 'cam-003',
        EDGELOOP_MQTT_URL: 'mqtt://127.0.0.1:1884',
        EDGELOOP_MQTT_PASSWORD: 'p',
        EDGELOOP_DATA_DIR: 'data',
      },
      cwd: dir,
    });
    if (!result.ok) throw new Error(JSON.stringify(result.error));
    expect(result.value.dataDir).toBe(path.join(dir, 'data'));
  });

  it('reads the password file and resolves paths against the config file', () => {
    writeFileSync(path.join(dir, 'mqtt.secret'), 'file-secret\n');
    const file = path.join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({ ...minimal, dataDir: './state', mqtt: { url: minimal.mqtt.url, passwordFile: 'mqtt.secret' } }),
    );
    const result = loadConfig({ filePath: file, env: {} });
    if (!result.ok) throw new Error(JSON.stringify(result.error));
    expect(result.value.mqtt.password).toBe('file-secret');
    expect(result.value.dataDir).toBe(path.join(dir, 'state'));
  });

  it('reports an unreadable password file and bad JSON as problems', () => {
    const missing = loadConfig({
      fileText: JSON.stringify({ ...minimal, mqtt: { url: minimal.mqtt.url, passwordFile: '/nonexistent/secret' } }),
      env: {},
    });
    expect(problemsOf(missing)).toEqual([expect.stringMatching(/^mqtt\.passwordFile: cannot read/)]);
    expect(problemsOf(loadConfig({ fileText: '{ not json', env: {} }))[0]).toMatch(/^\(file\): invalid JSON/);
    expect(problemsOf(loadConfig({ filePath: path.join(dir, 'absent.json'), env: {} }))[0]).toMatch(
      /^\(file\): cannot read/,
    );
  });

  it('validates the vision section and resolves its paths against the config file', () => {
    const file = path.join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({
        ...minimal,
        vision: {
          source: { kind: 'images', dir: 'frames' },
          model: { path: 'models/det.onnx', manifestPath: 'models/det.json' },
        },
      }),
    );
    const result = loadConfig({ filePath: file, env: {} });
    if (!result.ok) throw new Error(JSON.stringify(result.error.problems));
    expect(result.value.vision).toMatchObject({
      source: { kind: 'images', dir: path.join(dir, 'frames'), loop: true },
      model: { path: path.join(dir, 'models/det.onnx'), manifestPath: path.join(dir, 'models/det.json') },
      providers: ['tensorrt', 'cuda', 'cpu'],
    });
  });

  it('lists problems of the vision section under vision.', () => {
    const result = loadConfig({ fileText: JSON.stringify({ ...minimal, vision: { source: 'x' } }), env: {} });
    expect(problemsOf(result).some((problem) => problem.startsWith('vision.source'))).toBe(true);
  });

  it('reads trusted key files into trustedKeyPems and refuses a private key among them', () => {
    const keys = generateKeyPair();
    writeFileSync(path.join(dir, 'release.pub'), keys.publicKeyPem);
    writeFileSync(path.join(dir, 'release.key'), keys.privateKeyPem);
    const file = path.join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ ...minimal, models: { trustedKeys: ['release.pub'] } }));
    const result = loadConfig({ filePath: file, env: {} });
    if (!result.ok) throw new Error(JSON.stringify(result.error.problems));
    expect(result.value.models.trustedKeys).toEqual([path.join(dir, 'release.pub')]);
    expect(result.value.models.trustedKeyPems).toEqual([keys.publicKeyPem]);
    expect(result.value.models.health).toMatchObject({ minFrames: 30, minDurationS: 10, maxDurationS: 120 });

    writeFileSync(
      file,
      JSON.stringify({
        ...minimal,
        models: { trustedKeys: ['release.key', 'missing.pub'], health: { minDurationS: 30, maxDurationS: 5 } },
      }),
    );
    const problems = problemsOf(loadConfig({ filePath: file, env: {} }));
    expect(problems.some((problem) => problem.includes('models.health.maxDurationS'))).toBe(true);
    const refused = problemsOf(
      loadConfig({
        fileText: JSON.stringify({ ...minimal, models: { trustedKeys: ['release.key', 'missing.pub'] } }),
        env: {},
        cwd: dir,
      }),
    );
    expect(refused.some((problem) => problem.includes('missing.pub'))).toBe(true);
    expect(refused.some((problem) => problem.includes('private key'))).toBe(true);
  });

  it('reads every .pub file of a trusted keys folder', () => {
    const one = generateKeyPair();
    const two = generateKeyPair();
    mkdirSync(path.join(dir, 'keys'));
    writeFileSync(path.join(dir, 'keys', 'a.pub'), one.publicKeyPem);
    writeFileSync(path.join(dir, 'keys', 'b.pub'), two.publicKeyPem);
    const result = loadConfig({
      fileText: JSON.stringify({ ...minimal, models: { trustedKeys: ['keys'] } }),
      env: {},
      cwd: dir,
    });
    if (!result.ok) throw new Error(JSON.stringify(result.error.problems));
    expect(result.value.models.trustedKeyPems).toEqual([one.publicKeyPem, two.publicKeyPem]);
  });
});

describe('diffConfig', () => {
  it('lists the dotted paths that changed', () => {
    expect(
      diffConfig({ a: 1, b: { c: 2, d: [1, 2] }, e: 'x' }, { a: 1, b: { c: 3, d: [1, 2] }, e: 'y', f: true }),
    ).toEqual(['b.c', 'e', 'f']);
    expect(diffConfig({ a: [1] }, { a: [1, 2] })).toEqual(['a']);
  });
});
