import type { Reply } from '@edgeloop/protocol';

/**
 * Pending commands waiting for their reply, keyed by device and requestId. The ingest writer
 * resolves them once the reply is stored; a timer gives up on each.
 */
export type CommandWaiters = {
  /** Resolves with the reply, or null after `timeoutMs` or when `signal` aborts. */
  wait(deviceId: string, requestId: string, timeoutMs: number, signal?: AbortSignal): Promise<Reply | null>;
  /** Hands a stored reply to its waiter; false when nobody waits (late or unknown reply). */
  resolve(deviceId: string, reply: Reply): boolean;
  /** Gives up on every waiter (shutdown). */
  cancelAll(): void;
  readonly size: number;
};

export function createCommandWaiters(): CommandWaiters {
  const waiters = new Map<string, { resolve: (reply: Reply | null) => void; timer: ReturnType<typeof setTimeout> }>();
  const key = (deviceId: string, requestId: string) => `${deviceId}\u0000${requestId}`;
  return {
    wait(deviceId, requestId, timeoutMs, signal) {
      return new Promise((resolve) => {
        const k = key(deviceId, requestId);
        const giveUp = () => {
          const waiter = waiters.get(k);
          if (!waiter) return;
          waiters.delete(k);
          clearTimeout(waiter.timer);
          resolve(null);
        };
        const timer = setTimeout(giveUp, timeoutMs);
        waiters.set(k, {
          resolve: (reply) => {
            signal?.removeEventListener('abort', giveUp);
            resolve(reply);
          },
          timer,
        });
        if (signal?.aborted) giveUp();
        else signal?.addEventListener('abort', giveUp, { once: true });
      });
    },
    resolve(deviceId, reply) {
      const k = key(deviceId, reply.requestId);
      const waiter = waiters.get(k);
      if (!waiter) return false;
      waiters.delete(k);
      clearTimeout(waiter.timer);
      waiter.resolve(reply);
      return true;
    },
    cancelAll() {
      for (const waiter of waiters.values()) {
        clearTimeout(waiter.timer);
        waiter.resolve(null);
      }
      waiters.clear();
    },
    get size() {
      return waiters.size;
    },
  };
}
