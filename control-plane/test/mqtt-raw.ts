import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectSocket, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';

/*
 * Raw MQTT over plain sockets, for the tests and the bench of the MQTT front: what a well-behaved
 * client library never sends (announced lengths it does not follow with bytes, floods before
 * CONNECT, connect storms), and `edgeloop serve` in a child process to send it to.
 */

/** A fixed header: the type-and-flags byte, then the remaining length as MQTT encodes it (1 to 4 bytes). */
export function fixedHeader(first: number, length: number): Buffer {
  const bytes = [first];
  let rest = length;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0);
  return Buffer.from(bytes);
}

/** The start of a QoS 1 PUBLISH to `topic` (packet id 1) announcing `length` bytes after its fixed header. */
export function publishStart(topic: string, length: number): Buffer {
  const name = Buffer.from(topic);
  return Buffer.concat([fixedHeader(0x32, length), Buffer.from([0, name.length]), name, Buffer.from([0, 1])]);
}

/** An MQTT 3.1.1 CONNECT logging in as `id` with `password` (and a QoS 1 will when given). */
export function connectPacket(id: string, password: string, will?: { topic: string; payload: Buffer }): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: id,
    keepalive: 30,
    username: id,
    password: Buffer.from(password),
    ...(will ? { will: { ...will, qos: 1, retain: false } } : {}),
  });
}

/** A TCP socket to 127.0.0.1:`port`, from `localAddress` when given; resolves once connected. */
export function openSocket(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectSocket({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () =>
      resolve(socket),
    );
    socket.on('error', reject);
  });
}

/** Resolves when the server closed the socket, with what came back before. */
export function closedByServer(socket: Socket): Promise<Buffer> {
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(received))));
}

/**
 * Writes `total` bytes of zeros in 64 KiB pieces while the socket takes them; resolves with the
 * bytes written once all are, or once the socket closed.
 */
export async function writeZeros(socket: Socket, total: number): Promise<number> {
  const piece = Buffer.alloc(64 * 1024);
  let written = 0;
  while (written < total && !socket.destroyed) {
    const more = socket.write(piece);
    written += piece.length;
    if (!more) {
      await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
  return written;
}

/**
 * One connect of a storm: a socket from `localAddress` that writes `packet` once connected.
 * Resolves when the server closed it, with whether anything came back first (a CONNACK) or not
 * (closed at accept).
 */
export function attemptConnect(port: number, localAddress: string, packet: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectSocket({ port, host: '127.0.0.1', localAddress });
    let answered = false;
    socket.once('connect', () => socket.write(packet));
    socket.on('data', () => {
      answered = true;
    });
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(answered));
  });
}

/** What the server's debug log line `mqtt socket refused` says. */
export type Refusal = { readonly cause: string; readonly detail: string; readonly bytesRead: number };

export type ServeChild = {
  readonly child: ChildProcess;
  readonly httpUrl: string;
  readonly mqttPort: number;
  /** The refusals logged so far (they come through a pipe, after the closes). */
  readonly refusals: readonly Refusal[];
  /** A request to the API with the admin token. */
  api(method: string, path: string, body?: unknown): Promise<Response>;
  /** Enrolls a device without labels; resolves with its password. */
  enroll(id: string): Promise<string>;
  /** The value of one line of /metrics (`name` with its labels), 0 when absent. */
  metric(name: string): Promise<number>;
  /** SIGTERM, waits for the exit, removes the data dir. */
  stop(): Promise<void>;
};

const BIN = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));

/**
 * `edgeloop serve` in a child process (so what is measured of it is its own) on ports 0 of
 * 127.0.0.1, a temp data dir, debug logs (its refusals are collected) and a random admin token;
 * resolves once it printed its URLs.
 */
export async function startServeChild(options: { stderr?: 'pipe' | 'inherit' } = {}): Promise<ServeChild> {
  const adminToken = `front-admin-${randomBytes(12).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-front-'));
  const refusals: Refusal[] = [];
  const child = spawn(process.execPath, [BIN, 'serve', '--http-port', '0', '--mqtt-port', '0'], {
    env: {
      ...process.env,
      EDGELOOP_DATA_DIR: dataDir,
      EDGELOOP_HOST: '127.0.0.1',
      EDGELOOP_LOG_LEVEL: 'debug',
      EDGELOOP_ADMIN_TOKEN: adminToken,
    },
    stdio: ['ignore', 'pipe', options.stderr ?? 'pipe'],
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  let urls: { httpUrl: string; mqttPort: number };
  try {
    urls = await new Promise((resolve, reject) => {
      let text = '';
      let partial = '';
      child.once('exit', (code) => reject(new Error(`edgeloop serve exited with ${code}`)));
      child.stdout!.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (line.includes('mqtt socket refused')) refusals.push(JSON.parse(line) as Refusal);
          else if (!line.startsWith('{')) text += `${line}\n`;
        }
        const http = /HTTP\s+(http:\/\/\S+)/.exec(text);
        const broker = /MQTT\s+mqtt:\/\/\S+:(\d+)/.exec(text);
        if (http && broker) resolve({ httpUrl: http[1]!, mqttPort: Number(broker[1]) });
      });
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const { httpUrl, mqttPort } = urls;
  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  return {
    child,
    httpUrl,
    mqttPort,
    refusals,
    api,
    async enroll(id) {
      const response = await api('POST', '/api/v1/devices', { id, labels: {} });
      if (response.status !== 201) throw new Error(`enrolling ${id}: HTTP ${response.status} ${await response.text()}`);
      return ((await response.json()) as { credentials: { password: string } }).credentials.password;
    },
    async metric(name) {
      const text = await (await api('GET', '/metrics')).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ')[1]) : 0;
    },
    stop,
  };
}
