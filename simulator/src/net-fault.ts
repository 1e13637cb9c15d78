import net from 'node:net';

/*
 * Network faults for one simulated device, acting on the sockets of its MQTT connections
 * (sim-mqtt.ts). Three things can happen to the network:
 *
 *   partition()  every byte is silently dropped in both directions and the socket stays open, so
 *                the broker sees nothing at all: only its keepalive timer notices (the realistic
 *                "cable cut" / dead cellular modem). Closing the socket from the device side is
 *                swallowed too (a FIN would never arrive). New connection attempts time out.
 *   heal()       the network is back; sockets left open by a partition are destroyed now.
 *   killSockets() the device process died: sockets are destroyed, the kernel closes them, so
 *                the broker notices at once and publishes the will.
 *
 * A connection that was partitioned stays dead after heal() (its bytes are gone): the client
 * notices through its own keepalive and connects again, as a real device does.
 */

/** A connection the faults act on: its socket, and how it learns that the network is gone. */
export interface FaultyConnection {
  readonly socket: net.Socket | null;
  /** From now on every byte is dropped both ways, and closing the socket is swallowed. */
  blackhole(): void;
}

export class NetworkFaults {
  readonly #host: string;
  readonly #port: number;
  #partitioned = false;
  /** Connections with a socket; created on the first (a device has one at a time, mostly). */
  #live: Set<FaultyConnection> | null = null;
  /** Sockets a partition left open; created on the first one (most devices never have any). */
  #orphans: Set<net.Socket> | null = null;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  /** A TCP socket to the broker for `connection`, or null while partitioned (it never connects). */
  connect(connection: FaultyConnection): net.Socket | null {
    if (this.#partitioned) return null;
    const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
    this.#live ??= new Set();
    this.#live.add(connection);
    return socket;
  }

  /** The connection's socket is closed (or left behind a partition): the faults let go of it. */
  forget(connection: FaultyConnection): void {
    this.#live?.delete(connection);
  }

  partition(): void {
    this.#partitioned = true;
    if (this.#live) for (const connection of this.#live) connection.blackhole();
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
    if (this.#live) for (const connection of this.#live) connection.socket?.destroy();
    this.#live = null;
    this.#destroyOrphans();
  }

  /** A blackholed socket the device side let go of: it stays open until heal(). */
  orphan(connection: FaultyConnection, socket: net.Socket): void {
    this.forget(connection);
    this.#orphans ??= new Set();
    this.#orphans.add(socket);
  }
}
