import { describe, expect, it } from 'vitest';
import { parseResults, reportResult } from './report.ts';

describe('bench result lines', () => {
  it('reads back what reportResult printed, among other output, and skips lines that do not parse', () => {
    const printed: string[] = [];
    const log = console.log;
    console.log = (line: string) => printed.push(line);
    try {
      reportResult({ bench: 'bench:x', metric: 'ratio', value: '0.62 vs 0.22 s: 0.36', target: '>= 0.5', met: false });
      reportResult({ bench: 'bench:x', metric: 'RSS | growth', value: '33 MB' });
    } finally {
      console.log = log;
    }
    const output = ['setup 1.2 s', printed[0], 'result: {not json', 'result: {"bench":1}', printed[1], ''].join('\n');
    expect(parseResults(output)).toEqual([
      { bench: 'bench:x', metric: 'ratio', value: '0.62 vs 0.22 s: 0.36', target: '>= 0.5', met: false },
      { bench: 'bench:x', metric: 'RSS | growth', value: '33 MB' },
    ]);
  });
});
