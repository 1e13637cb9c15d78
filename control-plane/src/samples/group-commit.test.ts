import { describe, expect, it } from 'vitest';
import { createGroupCommit, type Settled } from './group-commit.ts';

/** A commit that records its batches and fails the items named in `bad`. */
function recording(bad: ReadonlySet<number> = new Set()) {
  const batches: number[][] = [];
  return {
    batches,
    async commit(items: readonly number[]): Promise<Settled<number>[]> {
      batches.push([...items]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return items.map((item) =>
        bad.has(item) ? { ok: false, error: new Error(`bad ${item}`) } : { ok: true, value: item * 10 },
      );
    },
  };
}

describe('createGroupCommit', () => {
  it('commits items submitted in the same turn together, and resolves each with its own result', async () => {
    const sink = recording();
    const sizes: number[] = [];
    const group = createGroupCommit({ commit: sink.commit, onBatch: (size) => sizes.push(size) });
    const results = await Promise.all([1, 2, 3, 4].map((n) => group.submit(n)));
    expect(results).toEqual([10, 20, 30, 40]);
    expect(sink.batches).toEqual([[1, 2, 3, 4]]);
    expect(sizes).toEqual([4]);
  });

  it('fills the next batch while one commits, and never exceeds maxBatch', async () => {
    const sink = recording();
    const group = createGroupCommit({ commit: sink.commit, maxBatch: 3 });
    const first = group.submit(1);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    // The first batch ([1]) is committing now; these wait for the next ones.
    const rest = [2, 3, 4, 5, 6].map((n) => group.submit(n));
    expect(await Promise.all([first, ...rest])).toEqual([10, 20, 30, 40, 50, 60]);
    expect(sink.batches).toEqual([[1], [2, 3, 4], [5, 6]]);
    await group.idle();
  });

  it('fails only the item whose commit failed; the rest of its batch is stored', async () => {
    const sink = recording(new Set([2]));
    const group = createGroupCommit({ commit: sink.commit });
    const settled = await Promise.allSettled([1, 2, 3].map((n) => group.submit(n)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'bad 2' });
    expect(sink.batches).toHaveLength(1);
  });

  it('rejects a whole batch whose commit throws, and commits the next batch normally', async () => {
    let calls = 0;
    const group = createGroupCommit<number, number>({
      async commit(items) {
        calls++;
        if (calls === 1) throw new Error('database gone');
        return items.map((item) => ({ ok: true, value: item }));
      },
    });
    const failed = await Promise.allSettled([1, 2].map((n) => group.submit(n)));
    expect(failed.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(await group.submit(3)).toBe(3);
  });

  it('rejects every item when commit answers the wrong number of outcomes', async () => {
    const group = createGroupCommit<number, number>({ commit: async () => [] });
    await expect(group.submit(1)).rejects.toThrow(/0 outcomes for 1 items/);
  });
});
