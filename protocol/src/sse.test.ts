import { describe, expect, it } from 'vitest';
import { createSseParser, readSse } from './sse.ts';

describe('server-sent events parser', () => {
  it('returns events only once their blank line has arrived, across chunk boundaries', () => {
    const parser = createSseParser();
    expect(parser.feed(': connected\n\nid: 7\nevent: rollout.verdict\nda')).toEqual([]);
    expect(parser.feed('ta: {"a":1}\n\nid: 8\n')).toEqual([{ id: '7', event: 'rollout.verdict', data: '{"a":1}' }]);
    expect(parser.feed('data: x\r\ndata: y\r\n\r\n')).toEqual([{ id: '8', event: 'message', data: 'x\ny' }]);
  });

  it('joins multi-line data, skips comments and handles CRLF', () => {
    const parser = createSseParser();
    expect(parser.feed(': hi\r\n\r\nevent: x\r\ndata: a\r\n')).toEqual([]);
    expect(parser.feed('data: b\r\nid: 7\r\n\r\n')).toEqual([{ id: '7', event: 'x', data: 'a\nb' }]);
  });

  it('skips comments and heartbeats', () => {
    expect(createSseParser().feed(': heartbeat\n\n: heartbeat\n\n')).toEqual([]);
  });

  it('reads a byte stream to its end', async () => {
    const bytes = new TextEncoder().encode('event: a\ndata: 1\n\nevent: b\ndata: 2\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, 5));
        controller.enqueue(bytes.slice(5));
        controller.close();
      },
    });
    const seen: string[] = [];
    for await (const event of readSse(body)) seen.push(`${event.event}=${event.data}`);
    expect(seen).toEqual(['a=1', 'b=2']);
  });
});
