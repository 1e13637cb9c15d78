import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { boundaryOf, MultipartError, readMultipart, readPartText } from './multipart.ts';

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

  it('skips a part whose body the caller does not read', async () => {
    const { contentType, bytes } = await encodeForm({
      ignored: 'x'.repeat(5000),
      wanted: 'yes',
    });
    const names: string[] = [];
    let wanted = '';
    for await (const part of readMultipart(pieces(bytes, 100), boundaryOf(contentType)!, { maxBytes: 1 << 20 })) {
      names.push(part.name);
      if (part.name === 'wanted') wanted = await readPartText(part.body, 100, part.name);
    }
    expect(names).toEqual(['ignored', 'wanted']);
    expect(wanted).toBe('yes');
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

  it('refuses truncated bodies, missing boundaries and parts without a name as bad requests', async () => {
    const { contentType, bytes } = await encodeForm({ a: 'hello world' });
    const boundary = boundaryOf(contentType)!;
    const drain = async (input: Uint8Array, b = boundary) => {
      for await (const part of readMultipart(pieces(input, 3), b, { maxBytes: 1 << 20 })) await collect(part.body);
    };
    await expect(drain(bytes.subarray(0, bytes.length - 20))).rejects.toBeInstanceOf(MultipartError);
    await expect(drain(Buffer.from('no boundary here'))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(
      drain(Buffer.from('--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n'), 'b'),
    ).rejects.toThrow(/no name/);
    await expect(drain(bytes)).resolves.toBeUndefined();
  });

  it('refuses part headers over their limit', async () => {
    const body = Buffer.from(
      `--b\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${'p'.repeat(40_000)}\r\n\r\nx\r\n--b--`,
    );
    const read = async () => {
      for await (const part of readMultipart(pieces(body, 4096), 'b', { maxBytes: 1 << 20 })) await collect(part.body);
    };
    await expect(read()).rejects.toThrow(/headers exceed/);
  });
});
