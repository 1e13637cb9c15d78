// One headline figure of a benchmark, printed as a `result:` line. `npm run bench:all` collects
// these lines from every bench's output into the summary table of bench/results.md (and the
// README's copy of it), so the table holds what the benches printed, never numbers typed by hand.

export type BenchResult = {
  /** The bench script, e.g. bench:ingest. */
  readonly bench: string;
  /** What is measured, in a few words. */
  readonly metric: string;
  /** The figure as printed, with its unit and its peer where there is one ("0.62 s vs 0.22 s: 0.36"). */
  readonly value: string;
  /** The target, when it names one ("<= 100 ms"). */
  readonly target?: string;
  /** Whether the target was met in this run. */
  readonly met?: boolean;
};

export const RESULT_PREFIX = 'result: ';

export function reportResult(result: BenchResult): void {
  console.log(`${RESULT_PREFIX}${JSON.stringify(result)}`);
}

/** The results printed in a bench's output, in order; lines that do not parse are left out. */
export function parseResults(output: string): BenchResult[] {
  const results: BenchResult[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith(RESULT_PREFIX)) continue;
    try {
      const value = JSON.parse(line.slice(RESULT_PREFIX.length)) as Partial<BenchResult>;
      if (typeof value.bench === 'string' && typeof value.metric === 'string' && typeof value.value === 'string')
        results.push(value as BenchResult);
    } catch {}
  }
  return results;
}
