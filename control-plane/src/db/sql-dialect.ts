import type { Column, SQL, SQLWrapper, Table } from 'drizzle-orm';
import type * as sqliteSchema from './sqlite/schema.ts';

/*
 * What a storage dialect hands the aggregates, which are written once for SQLite and PostgreSQL
 * (devices.ts, rollouts.ts, samples.ts, ...): how a statement runs and what it returns, the few
 * spellings that differ (JSON parameters and paths, byte-order collation, row locks), and how a
 * transaction body runs. Each store builds its own (sqlite/sql-dialect.ts, postgres/sql-dialect.ts).
 */

export type Row = Record<string, unknown>;

/** One statement of a transaction body, for the dialect to run; its result comes back at the `yield`. */
export type TxStatement = { readonly query: SQL; readonly result: 'rows' | 'changes' };

/**
 * A transaction body, written as a generator so that one body serves both dialects: SQLite runs it
 * synchronously inside one better-sqlite3 transaction (nothing else can slip a statement onto the
 * shared connection between BEGIN and COMMIT, as it could at an `await`), PostgreSQL awaits each
 * statement on the transaction's own connection. Read results with `yield* rowsOf(q)` and
 * `yield* changesOf(q)`; the body's return value is the transaction's.
 */
export type TxBody<T> = Generator<TxStatement, T, unknown>;

/** The rows of a statement inside a transaction body. */
export function* rowsOf(query: SQL): Generator<TxStatement, Row[], unknown> {
  return (yield { query, result: 'rows' }) as Row[];
}

/** The rows a write changed, inside a transaction body. */
export function* changesOf(query: SQL): Generator<TxStatement, number, unknown> {
  return (yield { query, result: 'changes' }) as number;
}

/** Runs a transaction body to its end, `execute` answering each statement (synchronously). */
export function driveTx<T>(body: TxBody<T>, execute: (statement: TxStatement) => unknown): T {
  let step = body.next();
  while (!step.done) step = body.next(execute(step.value));
  return step.value;
}

/** The same, each statement awaited (a dialect whose driver is asynchronous). */
export async function driveTxAsync<T>(
  body: TxBody<T>,
  execute: (statement: TxStatement) => Promise<unknown>,
): Promise<T> {
  let step = body.next();
  while (!step.done) step = body.next(await execute(step.value));
  return step.value;
}

/** A table with (at least) the columns of row type R, keyed as drizzle keys them. */
export type TableOf<R> = Table & { readonly [K in keyof R]-?: Column };

type RowOf<T extends { $inferSelect: unknown }> = T['$inferSelect'];

/**
 * The tables the shared aggregates query through drizzle columns, from the dialect's own schema:
 * the same table and column names in both (the PostgreSQL schema is the SQLite one's twin), and each
 * column maps its values to and from its driver (JSON text or jsonb, bigint text, 0/1 booleans).
 */
export type Tables = {
  readonly devices: TableOf<RowOf<typeof sqliteSchema.devices>>;
  readonly messages: TableOf<RowOf<typeof sqliteSchema.messages>>;
  readonly deadLetters: TableOf<RowOf<typeof sqliteSchema.deadLetters>>;
  readonly apiTokens: TableOf<RowOf<typeof sqliteSchema.apiTokens>>;
  readonly models: TableOf<RowOf<typeof sqliteSchema.models>>;
  readonly rollouts: TableOf<RowOf<typeof sqliteSchema.rollouts>>;
  readonly rolloutDevices: TableOf<RowOf<typeof sqliteSchema.rolloutDevices>>;
  readonly rolloutEvents: TableOf<RowOf<typeof sqliteSchema.rolloutEvents>>;
};

export type SqlDialect = {
  readonly tables: Tables;
  /** Rows of a query (SELECT, or a write with RETURNING). */
  all(query: SQL): Promise<Row[]>;
  /** Rows a write changed. */
  run(query: SQL): Promise<number>;
  /** A JSON value as a parameter of a JSON column. */
  json(value: unknown): SQL;
  /** The text at `path` (top-level key first) in the JSON column `column`. */
  jsonText(column: SQLWrapper, ...path: readonly [string, ...string[]]): SQL;
  /** A FROM item: the elements of the JSON array column `column`, as text, in column `value` of `alias`. */
  jsonElements(column: SQLWrapper, alias: string): SQL;
  /** A JSON column as read back (text in SQLite, parsed in PostgreSQL). */
  readJson(value: unknown): unknown;
  /**
   * A text column (or expression) compared in byte order, as SQLite does by default: ids are ASCII
   * and keyset paging must agree across dialects (PostgreSQL's default collation does not).
   */
  byteOrder(column: SQLWrapper): SQL;
  /**
   * What a transaction body appends to a SELECT of rows it will change: FOR UPDATE in PostgreSQL,
   * nothing in SQLite (its transaction holds the whole database).
   */
  readonly forUpdate: SQL;
  /**
   * The telemetry sample fields of a message body (telemetry-sample.ts): the SELECT expression,
   * and the value it returns read as the extracted array (or text of it).
   */
  sampleFields(body: SQLWrapper): SQL;
  readSampleFields(value: unknown): unknown;
  /** Runs a transaction body (see TxBody): all of its writes commit, or none does. */
  transaction<T>(body: () => TxBody<T>): Promise<T>;
  /** Runs these writes in one transaction: all of them commit, or none does. */
  batch(queries: readonly SQL[]): Promise<void>;
};
