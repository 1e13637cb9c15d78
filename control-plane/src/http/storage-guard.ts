import type { MiddlewareHandler } from 'hono';
import { isStorageFull } from '../disk-monitor.ts';
import { ApiError } from './api-error.ts';
import type { AppEnv, Route } from './route.ts';

/*
 * Writes below the disk watermark. While the data directory's free disk is at or below
 * `--min-free-disk-mb` (disk-monitor.ts), every API write (POST, PUT, PATCH) answers
 * 507 insufficient_storage with Retry-After before its body is read: sample and model uploads,
 * enrollment, tokens, rollouts. Reads go on, and so do DELETEs (they free space) and the rollout
 * actions that stop work (pause, abort). A write that fails with a full disk anyway (ENOSPC,
 * SQLITE_FULL) answers the same 507, and the monitor hears of it at once.
 */

export type StorageGate = {
  /** Null when writes may go ahead; otherwise why not, in words. */
  refusal(): string | null;
  /** Tells the monitor of a failed write; true when it was a full disk. */
  noteError(error: unknown): boolean;
  /** Retry-After of the 507 answers, in seconds. */
  readonly retryAfterS: number;
};

/** Writes that go ahead below the watermark: they stop work, and an operator may need them then. */
export const STORAGE_EXEMPT_ROUTES: ReadonlySet<string> = new Set([
  'POST /api/v1/rollouts/:id/pause',
  'POST /api/v1/rollouts/:id/abort',
]);

const GUARDED_METHODS: ReadonlySet<string> = new Set(['post', 'put', 'patch']);

/** Whether the route waits for disk space (a POST, PUT or PATCH that is not exempt). */
export function guardsStorage(route: Pick<Route, 'method' | 'path'>): boolean {
  return GUARDED_METHODS.has(route.method) && !STORAGE_EXEMPT_ROUTES.has(`${route.method.toUpperCase()} ${route.path}`);
}

/** The 507 of a write refused for want of disk space. */
export function insufficientStorage(reason: string, retryAfterS: number, cause?: unknown): ApiError {
  return new ApiError('insufficient_storage', `not enough free disk on the control plane: ${reason}; retry later`, {
    headers: { 'retry-after': String(retryAfterS) },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** What OpenAPI lists for a guarded route. */
export const INSUFFICIENT_STORAGE_DESCRIPTION =
  'insufficient_storage: free disk of the control plane is below its watermark (or full); retry after Retry-After seconds';

/** Middleware of a guarded route: 507 with Retry-After while the gate refuses. */
export function storageGuard(gate: StorageGate): MiddlewareHandler<AppEnv> {
  return async (_c, next) => {
    const reason = gate.refusal();
    if (reason !== null) throw insufficientStorage(reason, gate.retryAfterS);
    await next();
  };
}

/** The 507 for an error thrown by a write that found the disk full; null for any other error. */
export function storageFailure(gate: StorageGate | undefined, error: unknown): ApiError | null {
  if (!isStorageFull(error)) return null;
  gate?.noteError(error);
  return insufficientStorage('the disk is full', gate?.retryAfterS ?? 30, error);
}
