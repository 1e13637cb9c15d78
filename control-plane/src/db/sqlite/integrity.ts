import type Database from 'better-sqlite3';

/*
 * The start's integrity check of the SQLite file. A file with corrupted pages used to start and
 * serve, failing later in some reads and some devices' publishes; now `edgeloop serve` refuses to
 * start, naming the file and what to do. `quick` (PRAGMA quick_check: every page and b-tree, not
 * the index contents) is the default; `full` (integrity_check) also compares indexes with their
 * tables; `off` skips it for very large files, or to open a damaged one and look inside.
 */

export type IntegrityCheck = 'quick' | 'full' | 'off';

/** The SQLite file is damaged (or is not a database). `detail` says what SQLite found. */
export class DatabaseCorruptError extends Error {
  readonly code = 'database_corrupt';
  readonly file: string;
  readonly detail: string;
  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super(
      `the database ${file} is corrupt (${detail}): restore it from a backup, or start with --integrity-check off to inspect it`,
      options,
    );
    this.name = 'DatabaseCorruptError';
    this.file = file;
    this.detail = detail;
  }
}

const CORRUPT_CODES = /^SQLITE_(CORRUPT|NOTADB)/;

/** Whether an error from better-sqlite3 says the file is damaged or no database (SQLITE_CORRUPT*, SQLITE_NOTADB). */
export function isCorruption(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CORRUPT_CODES.test(code);
}

/** At most this many problems are asked for (and the first few shown): the answer is no anyway. */
const MAX_PROBLEMS = 5;

/**
 * Runs the check on an open database: null when it passes (or is off), else the problems SQLite
 * reported, joined. A corruption error thrown by the check itself is a failed check too.
 */
export function checkIntegrity(client: Database.Database, mode: IntegrityCheck): string | null {
  if (mode === 'off') return null;
  const pragma = mode === 'quick' ? 'quick_check' : 'integrity_check';
  let rows: unknown[];
  try {
    rows = client.pragma(`${pragma}(${MAX_PROBLEMS})`) as unknown[];
  } catch (error) {
    if (isCorruption(error)) return `${pragma}: ${(error as Error).message.replace(/\s+/g, ' ')}`;
    throw error;
  }
  // One line each: SQLite heads some with `*** in database main ***` and a line break.
  const problems = rows.map((row) =>
    String(Object.values(row as Record<string, unknown>)[0])
      .replace(/\*\*\* in database \w+ \*\*\*/g, '')
      .replace(/\s+/g, ' ')
      .trim(),
  );
  if (problems.length === 1 && problems[0] === 'ok') return null;
  const shown = problems.slice(0, 2).join('; ');
  return `${pragma}: ${shown}${problems.length > 2 ? `; and ${problems.length - 2} more` : ''}`;
}
