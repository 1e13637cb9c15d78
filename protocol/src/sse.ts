/* A Server-Sent Events parser (the subset the control plane writes: id, event, data, comments). */

export type SseEvent = { readonly id: string | null; readonly event: string; readonly data: string };

/** Feed it text as it arrives; it returns the events completed by that text. */
export function createSseParser(): { feed(text: string): SseEvent[] } {
  let buffer = '';
  return {
    feed(text) {
      buffer += text.replace(/\r\n?/g, '\n');
      const events: SseEvent[] = [];
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id: string | null = null;
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line === '' || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(value);
          else if (field === 'event') event = value;
          else if (field === 'id') id = value;
        }
        if (data.length > 0) events.push({ id, event, data: data.join('\n') });
      }
      return events;
    },
  };
}

/** The events of a byte stream, as they arrive; ends when the stream does. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const parser = createSseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    // Cancelling (not just releasing) closes the connection when the consumer stops early.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
