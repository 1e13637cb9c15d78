import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { boundaryOf, type MultipartOptions, readMultipart, readPartText } from './multipart.ts';

/** A multipart body exactly as fetch (undici) encodes FormData, with its content type. */
async function encodeForm(fields: Record<string, string | { bytes: Uint8Array; filename: string }>) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value.bytes]), value.filename);
  }
  const request = new Request('http://x/', { method: 'POST', body: form });
  return {
    contentType: request.headers.get('content-type') ?? '',
    bytes: Buffer.from(await request.arrayBuffer()),
  };
}

/** Feeds `bytes` in pieces of `size` bytes, so boundaries straddle chunk edges. */
async function* pieces(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

describe('boundaryOf', () => {
  it('reads the boundary of multipart/form-data and nothing else', () => {
    expect(boundaryOf('multipart/form-data; boundary=abc')).toBe('abc');
    expect(boundaryOf('Multipart/Form-Data; charset=utf-8; boundary="a b"')).toBe('a b');
    expect(boundaryOf('application/json')).toBeNull();
    expect(boundaryOf('multipart/form-data')).toBeNull();
    expect(boundaryOf('multipart/form-data; boundary="a\\"b"')).toBeNull();
    expect(boundaryOf(undefined)).toBeNull();
  });
});

describe('readMultipart', () => {
  // Bytes that look like the syntax: CRLF, dashes, a fake boundary line.
  const tricky = Buffer.concat([
    Buffer.from('\r\n--\r\n--notTheBoundary\r\n\r\n'),
    randomBytes(70_000),
    Buffer.from('\r\n-'),
  ]);

  for (const size of [1, 7, 64, 65_536]) {
    it(`yields each part's name, filename and exact bytes when fed ${size}-byte chunks`, async () => {
      const { contentType, bytes } = await encodeForm({
        release: '{"release":{"name":"det"},"signature":"c2ln"}',
        model: { bytes: tricky, filename: 'det.onnx' },
      });
      const boundary = boundaryOf(contentType);
      expect(boundary).not.toBeNull();
      const seen: { name: string; filename: string | null; body: Buffer }[] = [];
      for await (const part of readMultipart(pieces(bytes, size), boundary!, { maxBytes: 1 << 20 })) {
        seen.push({ name: part.name, filename: part.filename, body: await collect(part.body) });
      }
      expect(seen.map((p) => [p.name, p.filename])).toEqual([
        ['release', null],
        ['model', 'det.onnx'],
      ]);
      expect(seen[0]!.body.toString()).toBe('{"release":{"name":"det"},"signature":"c2ln"}');
      expect(seen[1]!.body.equals(tricky)).toBe(true);
    });
  }

  it("reads a web ReadableStream body, as a Hono route gets it, with each part's content type", async () => {
    const form = new FormData();
    form.append('release', '{}');
    form.append('model', new Blob([Buffer.from('onnx')], { type: 'application/octet-stream' }), 'dir/m.onnx');
    form.append('note', new Blob(['hi'], { type: 'text/markdown' }), 'n.md');
    const request = new Request('http://x/', { method: 'POST', body: form });
    const boundary = boundaryOf(request.headers.get('content-type'))!;
    const seen: [string, string | null, string, string][] = [];
    for await (const part of readMultipart(request.body as AsyncIterable<Uint8Array>, boundary, {
      maxBytes: 1 << 20,
    })) {
      seen.push([part.name, part.filename, part.contentType, (await collect(part.body)).toString()]);
    }
    expect(seen).toEqual([
      ['release', null, 'text/plain', '{}'],
      ['model', 'm.onnx', 'application/octet-stream', 'onnx'],
      ['note', 'n.md', 'text/markdown', 'hi'],
    ]);
  });

  it('streams a large file, reading the source only as fast as the body is consumed', async () => {
    const chunk = randomBytes(64 * 1024);
    const chunks = 256; // 16 MiB
    const head = Buffer.from(
      '--b\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n' +
        'Content-Type: application/octet-stream\r\n\r\n',
    );
    let produced = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      yield head;
      for (let i = 0; i < chunks; i++) {
        produced += chunk.length;
        yield chunk;
      }
      yield Buffer.from('\r\n--b--\r\n');
    }
    let consumed = 0;
    let maxAhead = 0;
    const hash = createHash('sha256');
    for await (const part of readMultipart(source(), 'b', { maxBytes: 1 << 30 })) {
      for await (const piece of part.body) {
        consumed += piece.byteLength;
        hash.update(piece);
        maxAhead = Math.max(maxAhead, produced - consumed);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    expect(consumed).toBe(chunk.length * chunks);
    const expected = createHash('sha256');
    for (let i = 0; i < chunks; i++) expected.update(chunk);
    expect(hash.digest('hex')).toBe(expected.digest('hex'));
    // A few chunks of read-ahead in the stream buffers, never the whole file.
    expect(maxAhead).toBeLessThan(1024 * 1024);
  });

  it('skips a part whose body the caller does not read, or reads only in part', async () => {
    const { contentType, bytes } = await encodeForm({
      ignored: 'x'.repeat(5000),
      unread: { bytes: randomBytes(200_000), filename: 'a.bin' },
      half: { bytes: randomBytes(200_000), filename: 'b.bin' },
      wanted: 'yes',
    });
    const names: string[] = [];
    let wanted = '';
    for await (const part of readMultipart(pieces(bytes, 100), boundaryOf(contentType)!, { maxBytes: 1 << 20 })) {
      names.push(part.name);
      if (part.name === 'half') {
        for await (const _ of part.body) break;
      }
      if (part.name === 'wanted') wanted = await readPartText(part.body, 100, part.name);
    }
    expect(names).toEqual(['ignored', 'unread', 'half', 'wanted']);
    expect(wanted).toBe('yes');
  });

  it('stops reading the source when the caller leaves early', async () => {
    const { contentType, bytes } = await encodeForm({ a: 'first', b: { bytes: randomBytes(100_000), filename: 'b' } });
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        yield* pieces(bytes, 1000);
      } finally {
        closed = true;
      }
    }
    for await (const part of readMultipart(source(), boundaryOf(contentType)!, { maxBytes: 1 << 20 })) {
      if (part.name === 'b') break;
    }
    await vi.waitFor(() => expect(closed).toBe(true));
  });

  it('refuses a body over the limit with payload_too_large', async () => {
    const { contentType, bytes } = await encodeForm({ model: { bytes: randomBytes(10_000), filename: 'm' } });
    const read = async () => {
      for await (const part of readMultipart(pieces(bytes, 1000), boundaryOf(contentType)!, { maxBytes: 5000 })) {
        await collect(part.body);
      }
    };
    await expect(read()).rejects.toMatchObject({ code: 'payload_too_large' });
  });

  it('refuses a field over its limit with payload_too_large, and too many parts as a bad request', async () => {
    const big = await encodeForm({ release: 'x'.repeat(2000) });
    const drain = async (form: { contentType: string; bytes: Buffer }, options: Partial<MultipartOptions>) => {
      for await (const part of readMultipart(pieces(form.bytes, 512), boundaryOf(form.contentType)!, {
        maxBytes: 1 << 20,
        ...options,
      })) {
        await collect(part.body);
      }
    };
    await expect(drain(big, { maxFieldBytes: 1000 })).rejects.toMatchObject({ code: 'payload_too_large' });
    await expect(drain(big, { maxFieldBytes: 2000 })).resolves.toBeUndefined();
    const many = await encodeForm({ a: '1', b: '2', c: { bytes: Buffer.from('3'), filename: 'c' } });
    await expect(drain(many, { maxParts: 2 })).rejects.toMatchObject({ code: 'bad_request', message: /more than 2/ });
    await expect(drain(many, { maxParts: 3 })).resolves.toBeUndefined();
  });

  it('refuses truncated bodies, missing boundaries and parts without a name as bad requests', async () => {
    const { contentType, bytes } = await encodeForm({
      a: 'hello world',
      f: { bytes: randomBytes(5000), filename: 'f' },
    });
    const boundary = boundaryOf(contentType)!;
    const drain = async (input: Uint8Array, b = boundary) => {
      for await (const part of readMultipart(pieces(input, 3), b, { maxBytes: 1 << 20 })) await collect(part.body);
    };
    // Cut inside the file, inside the closing boundary, and inside the field.
    for (const cut of [bytes.length - 1000, bytes.length - 20, 120]) {
      await expect(drain(bytes.subarray(0, cut))).rejects.toMatchObject({ code: 'bad_request' });
    }
    await expect(drain(Buffer.from('no boundary here'))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(drain(Buffer.alloc(0))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(
      drain(Buffer.from('--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n'), 'b'),
    ).rejects.toThrow(/no name/);
    await expect(
      drain(Buffer.from('--b\r\nContent-Disposition: form-data; name="a"\r\nbroken header\r\n\r\nx\r\n--b--\r\n'), 'b'),
    ).rejects.toMatchObject({ code: 'bad_request', message: /malformed part header/i });
    await expect(drain(bytes)).resolves.toBeUndefined();
  });

  it('refuses part headers over 16 KiB', async () => {
    const body = Buffer.from(
      `--b\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${'p'.repeat(40_000)}\r\n\r\nx\r\n--b--`,
    );
    const read = async () => {
      for await (const part of readMultipart(pieces(body, 4096), 'b', { maxBytes: 1 << 20 })) await collect(part.body);
    };
    await expect(read()).rejects.toMatchObject({ code: 'bad_request', message: /malformed part header/i });
  });
});
