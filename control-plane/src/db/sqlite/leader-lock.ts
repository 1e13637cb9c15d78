import type { LeaderLock } from '../repositories.ts';

/**
 * SQLite is the embedded, single-process store: the one control plane that opened the file is the
 * leader. (Two processes on one file are not a supported deployment; scale out on PostgreSQL.)
 */
export function createSqliteLeaderLock(): LeaderLock {
  let held = false;
  return {
    async acquire() {
      held = true;
      return true;
    },
    get held() {
      return held;
    },
    async release() {
      held = false;
    },
  };
}
