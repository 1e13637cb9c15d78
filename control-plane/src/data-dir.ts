import { chmodSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/*
 * The data directory holds the database, the server pepper and every blob: nobody but its owner
 * may read it. At start the directory and every folder under it are brought to 0700 and every file
 * to 0600 (links are not followed); what was looser is returned, so the start can say so.
 */

export const DATA_DIR_MODE = 0o700;
export const DATA_FILE_MODE = 0o600;

export type ModeFix = { readonly path: string; readonly from: number; readonly to: number };

export type DataDirCheck = {
  /** Paths whose modes were looser and were fixed. */
  readonly fixed: readonly ModeFix[];
  /** Paths whose modes were looser and could not be changed (another owner). */
  readonly failed: readonly { readonly path: string; readonly mode: number; readonly error: string }[];
};

/** Brings `dir` (which exists) and everything under it to 0700 folders and 0600 files. */
export function tightenDataDir(dir: string): DataDirCheck {
  const fixed: ModeFix[] = [];
  const failed: { path: string; mode: number; error: string }[] = [];
  const visit = (path: string) => {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) return;
    const isDir = stat.isDirectory();
    if (!isDir && !stat.isFile()) return;
    const mode = stat.mode & 0o777;
    const wanted = isDir ? DATA_DIR_MODE : DATA_FILE_MODE;
    // Only bits beyond the wanted ones are looser (an owner-only 0400 file is fine as it is).
    if ((mode & ~wanted) !== 0) {
      const to = mode & wanted;
      try {
        chmodSync(path, isDir ? DATA_DIR_MODE : to);
        fixed.push({ path, from: mode, to: isDir ? DATA_DIR_MODE : to });
      } catch (error) {
        failed.push({ path, mode, error: (error as Error).message });
      }
    }
    if (isDir) for (const name of readdirSync(path)) visit(join(path, name));
  };
  visit(dir);
  return { fixed, failed };
}

/** `0755` for messages. */
export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
