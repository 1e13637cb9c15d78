import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readMultipart } from '../multipart.ts';
import { splitSampleForm } from './samples-form.ts';

/*
 * The in-memory split of a one-request upload: the canonical body of a device gives the same two
 * parts busboy reads from it; anything else is left to busboy (null).
 */

const B = 'edgeloopBoundary7';
const META = '{"deviceId":"cam-1","seq":1}';

function body(parts: readonly { headers: string; content: Buffer | string }[], close = `--${B}--\r\n`): Buffer {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    pieces.push(Buffer.from(`--${B}\r\n${part.headers}\r\n\r\n`), Buffer.from(part.content), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(close));
  return Buffer.concat(pieces);
}

const metadataPart = { headers: 'content-disposition: form-data; name="metadata"', content: META };
const imagePart = (image: Buffer) => ({
  headers: 'Content-Disposition: form-data; name="image"; filename="s.jpg"\r\nContent-Type: image/jpeg',
  content: image,
});

/** What busboy (the general reader) makes of the same body. */
async function throughBusboy(bytes: Buffer): Promise<Map<string, Buffer>> {
  const parts = new Map<string, Buffer>();
  const source = (async function* () {
    yield bytes;
  })();
  for await (const part of readMultipart(source, B, { maxBytes: 1 << 22 })) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.body) chunks.push(Buffer.from(chunk));
    parts.set(part.name, Buffer.concat(chunks));
  }
  return parts;
}

describe('splitSampleForm', () => {
  it('splits a canonical body into the parts busboy reads, the image as a view of the body', async () => {
    // Images that hold CR LF, dashes and most of the delimiter, but never all of it.
    const images = [
      randomBytes(200_000),
      Buffer.concat([Buffer.from(`\r\n--${B.slice(0, -1)}`), randomBytes(1000), Buffer.from('\r\n--')]),
      Buffer.alloc(0),
    ];
    for (const image of images) {
      const bytes = body([metadataPart, imagePart(image)]);
      const form = splitSampleForm(bytes, B);
      expect(form).not.toBeNull();
      const busboy = await throughBusboy(bytes);
      expect(form!.metadata.toString()).toBe(busboy.get('metadata')!.toString());
      expect(form!.image.equals(busboy.get('image')!)).toBe(true);
      expect(form!.image.buffer).toBe(bytes.buffer);
    }
  });

  it('takes an epilogue after the close delimiter, and quoted or bare names, in any header case', () => {
    const bytes = body(
      [
        { headers: 'CONTENT-DISPOSITION: Form-Data; name=metadata', content: META },
        imagePart(Buffer.from([0xff, 0xd8])),
      ],
      `--${B}--\r\nthe epilogue`,
    );
    expect(splitSampleForm(bytes, B)?.metadata.toString()).toBe(META);
  });

  it('leaves every body outside the canonical shape to the general reader', () => {
    const image = imagePart(Buffer.from('jpeg'));
    const cases: Record<string, Buffer> = {
      preamble: Buffer.concat([Buffer.from('preamble\r\n'), body([metadataPart, image])]),
      'other boundary': Buffer.from(body([metadataPart, image]).toString('latin1').replaceAll(B, `${B}x`), 'latin1'),
      'no close delimiter': body([metadataPart, image], ''),
      'transport padding': Buffer.from(
        body([metadataPart, image])
          .toString('latin1')
          .replace(`\r\n--${B}\r\nContent-Disposition`, `\r\n--${B}  \r\nContent-Disposition`),
        'latin1',
      ),
      'image first': body([image, metadataPart]),
      'one part': body([metadataPart]),
      'three parts': body([metadataPart, image, image]),
      'another name': body([{ ...metadataPart, headers: 'content-disposition: form-data; name="meta"' }, image]),
      'folded header': body([{ headers: 'content-disposition: form-data;\r\n name="metadata"', content: META }, image]),
      'an extra header': body([{ headers: `${metadataPart.headers}\r\nx-extra: 1`, content: META }, image]),
      'escape in a name': body([
        { headers: 'content-disposition: form-data; name="meta\\"data"', content: META },
        image,
      ]),
      'filename*': body([{ headers: `${metadataPart.headers}; filename*=UTF-8''a`, content: META }, image]),
      'not form-data': body([{ headers: 'content-disposition: attachment; name="metadata"', content: META }, image]),
      'a header without a colon': body([{ headers: 'content-disposition form-data', content: META }, image]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      expect(splitSampleForm(bytes, B), name).toBeNull();
    }
  });
});
