import net from 'node:net';
import { Duplex } from 'node:stream';

/*
 * Network faults for one simulated device, injected under mqtt.js through the agent link's
 * `createClient` (clientOverStream). Three things can happen to the network:
 *
 *   partition()  every byte is silently dropped in both directions and the socket stays open, so
 *                the broker sees nothing at all: only its keepalive timer notices (the realistic
 *                "cable cut" / dead cellular modem). Closing the socket from the device side is
 *                swallowed too (a FIN would never arrive). New connection attempts time out.
 *   heal()       the network is back; sockets left open by a partition are destroyed now.
 *   killSockets() the device process died: sockets are destroyed, the kernel closes them, so
 *                the broker notices at once and publishes the will.
 */

type Link = { socket: net.Socket; wrapper: FaultyStream };

export class NetworkFaults {
  readonly #host: string;
  readonly #port: number;
  #partitioned = false;
  readonly #live = new Set<Link>();
  /** Sockets a partition left open; created on the first one (most devices never have any). */
  #orphans: Set<net.Socket> | null = null;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  /** A stream for mqtt.js: a TCP socket to the broker, or a dead end while partitioned. */
  createStream(): Duplex {
    const wrapper = new FaultyStream(this);
    if (this.#partitioned) return wrapper; // never connects: mqtt.js's connect timeout fires
    const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
    const link = { socket, wrapper };
    this.#live.add(link);
    wrapper.attach(socket, () => this.#live.delete(link));
    return wrapper;
  }

  partition(): void {
    this.#partitioned = true;
    for (const link of this.#live) link.wrapper.blackhole();
  }

  heal(): void {
    this.#partitioned = false;
    this.#destroyOrphans();
  }

  #destroyOrphans(): void {
    if (this.#orphans === null) return;
    for (const socket of this.#orphans) socket.destroy();
    this.#orphans = null;
  }

  killSockets(): void {
    for (const link of this.#live) link.socket.destroy();
    this.#live.clear();
    this.#destroyOrphans();
  }

  /** A blackholed socket the device side let go of: it stays open until heal(). */
  orphan(socket: net.Socket, link: () => void): void {
    link();
    this.#orphans ??= new Set();
    this.#orphans.add(socket);
  }
}

class FaultyStream extends Duplex {
  readonly #faults: NetworkFaults;
  #socket: net.Socket | null = null;
  #forget: () => void = () => {};
  #blackholed = false;

  constructor(faults: NetworkFaults) {
    super();
    this.#faults = faults;
  }

  attach(socket: net.Socket, forget: () => void): void {
    this.#socket = socket;
    this.#forget = forget;
    socket.on('data', (chunk: Buffer) => {
      if (!this.#blackholed && !this.push(chunk)) socket.pause();
    });
    socket.on('end', () => {
      if (!this.#blackholed) this.push(null);
    });
    socket.on('close', () => {
      this.#forget();
      if (!this.#blackholed && !this.destroyed) this.destroy();
    });
    socket.on('error', (error) => {
      if (!this.#blackholed && !this.destroyed) this.destroy(error);
    });
  }

  blackhole(): void {
    this.#blackholed = true;
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const socket = this.#socket;
    if (this.#blackholed || socket === null) {
      callback();
      return;
    }
    socket.write(chunk, (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.#blackholed) this.#socket?.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const socket = this.#socket;
    if (socket !== null) {
      if (this.#blackholed && !socket.destroyed) this.#faults.orphan(socket, this.#forget);
      else socket.destroy();
    }
    callback(error);
  }
}
