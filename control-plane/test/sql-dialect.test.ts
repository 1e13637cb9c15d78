import { eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import { postgresDialect } from '../src/db/postgres/sql-dialect.ts';
import type { PostgresStore } from '../src/db/postgres/store.ts';
import type { NewDeadLetter, Store } from '../src/db/repositories.ts';
import { changesOf, rowsOf, type SqlDialect } from '../src/db/sql-dialect.ts';
import { insertRows, rowReader } from '../src/db/sql-row.ts';
import { sqliteDialect } from '../src/db/sqlite/sql-dialect.ts';
import type { SqliteStore } from '../src/db/sqlite/store.ts';
import { storeDialects, useDialectStore } from './store-dialects.ts';

/*
 * The dialect layer the shared aggregates stand on (db/sql-dialect.ts): transaction bodies commit
 * or roll back whole, read their own writes, and the spellings that differ (byte order, JSON paths)
 * answer alike in SQLite and PostgreSQL.
 */

const postgres = serviceGate('postgres');
const dialects = storeDialects({
  postgres,
  prefix: 'dialect',
  maxConnections: 2,
  clean: sql`DELETE FROM dead_letters; DELETE FROM devices`,
});

function dialectOf(store: Store): SqlDialect {
  return store.dialect === 'sqlite'
    ? sqliteDialect((store as SqliteStore).db)
    : postgresDialect((store as PostgresStore).db);
}

const letter = (topic: string): NewDeadLetter => ({
  receivedAt: 1,
  deviceId: 'cam-1',
  topic,
  reason: 'invalid_json',
  detail: 'x',
  payloadSize: 1,
  payloadExcerpt: '',
});

describe.each(dialects)('sql dialect: $name', (storeDialect) => {
  let store: Store;
  useDialectStore(storeDialect, (s) => {
    store = s;
  });

  const topics = async (dialect: SqlDialect) => {
    const { deadLetters } = dialect.tables;
    const read = rowReader(deadLetters);
    const rows = await dialect.all(sql`SELECT * FROM ${deadLetters} ORDER BY ${deadLetters.id} ASC`);
    return rows.map((row) => read(row).topic);
  };

  it('commits every write of a transaction body, which reads its own writes and returns its value', async () => {
    const dialect = dialectOf(store);
    const { deadLetters } = dialect.tables;
    const seen = await dialect.transaction(function* () {
      yield* changesOf(insertRows(deadLetters, [letter('a'), letter('b')]));
      const changed = yield* changesOf(
        sql`UPDATE ${deadLetters} SET reason = 'seen' WHERE ${eq(deadLetters.topic, 'b')}`,
      );
      const rows = yield* rowsOf(sql`SELECT count(*) AS n FROM ${deadLetters}`);
      return { changed, n: Number(rows[0]?.n) };
    });
    expect(seen).toEqual({ changed: 1, n: 2 });
    expect(await topics(dialect)).toEqual(['a', 'b']);
  });

  it('rolls every write of a transaction body back when the body throws after them', async () => {
    const dialect = dialectOf(store);
    const { deadLetters } = dialect.tables;
    await dialect.run(insertRows(deadLetters, [letter('kept')]));
    await expect(
      dialect.transaction(function* () {
        yield* changesOf(insertRows(deadLetters, [letter('lost')]));
        yield* changesOf(sql`DELETE FROM ${deadLetters} WHERE ${eq(deadLetters.topic, 'kept')}`);
        throw new Error('the body gives up');
      }),
    ).rejects.toThrow('the body gives up');
    expect(await topics(dialect)).toEqual(['kept']);
  });

  it('rolls back a body whose statement fails, and the next transaction runs', async () => {
    const dialect = dialectOf(store);
    const { deadLetters } = dialect.tables;
    await expect(
      dialect.transaction(function* () {
        yield* changesOf(insertRows(deadLetters, [letter('lost')]));
        yield* rowsOf(sql`SELECT no_such_column FROM ${deadLetters}`);
      }),
    ).rejects.toThrow();
    await dialect.transaction(function* () {
      yield* changesOf(insertRows(deadLetters, [letter('next')]));
    });
    expect(await topics(dialect)).toEqual(['next']);
  });

  it('orders and compares text in byte order: upper case before lower case, digits first', async () => {
    const dialect = dialectOf(store);
    const { deadLetters } = dialect.tables;
    await dialect.run(insertRows(deadLetters, ['b', 'B', 'a', 'A', '1'].map(letter)));
    const topic = dialect.byteOrder(deadLetters.topic);
    const ordered = await dialect.all(sql`SELECT topic FROM ${deadLetters} ORDER BY ${topic} ASC`);
    expect(ordered.map((row) => row.topic)).toEqual(['1', 'A', 'B', 'a', 'b']);
    const after = await dialect.all(sql`SELECT topic FROM ${deadLetters} WHERE ${topic} > 'B' ORDER BY ${topic} ASC`);
    expect(after.map((row) => row.topic)).toEqual(['a', 'b']);
  });

  it('reads the text at a top-level key and at a nested path of a JSON column', async () => {
    const dialect = dialectOf(store);
    const { devices } = dialect.tables;
    const enrolled = await store.devices.enroll({ id: 'cam-1', labels: { site: 'north' }, secretHash: 'h', now: 1 });
    expect(enrolled.ok).toBe(true);
    await dialect.run(
      sql`UPDATE ${devices} SET reported = ${dialect.json({ model: { active: { name: 'det' } } })}
          WHERE ${eq(devices.id, 'cam-1')}`,
    );
    const [row] = await dialect.all(
      sql`SELECT ${dialect.jsonText(devices.labels, 'site')} AS site,
                 ${dialect.jsonText(devices.reported, 'model', 'active', 'name')} AS model,
                 ${dialect.jsonText(devices.reported, 'model', 'missing')} AS missing
          FROM ${devices}`,
    );
    expect(row).toEqual({ site: 'north', model: 'det', missing: null });
  });
});
