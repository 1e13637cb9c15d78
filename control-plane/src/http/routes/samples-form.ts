/*
 * The one-request sample upload as a device sends it, split in memory: a multipart/form-data body
 * (RFC 7578) read whole, of exactly two parts, `metadata` and then `image`, each with a plain
 * Content-Disposition (and an optional Content-Type). The delimiters are found with
 * Buffer.indexOf (native), where busboy's streaming search walks the 200 KB image in JavaScript:
 * the largest cost of an upload after the hash.
 *
 * It is a fast path only. Any body outside that canonical shape (a preamble, transport padding,
 * folded or other headers, escapes in a quoted name, other parts, a missing close delimiter)
 * returns null, and the route gives the same bytes to the general reader (http/multipart.ts, on
 * busboy), which decides. So the two can differ only in speed, never in what is accepted.
 */

export type SampleForm = {
  /** The metadata part's bytes (JSON text). */
  readonly metadata: Buffer;
  /** The image part's bytes: a view into the body, not a copy. */
  readonly image: Buffer;
};

/** The parameters of a Content-Disposition value, or null when it is not a plain form-data one. */
function dispositionOf(value: string): Map<string, string> | null {
  const [type, ...params] = value.split(';');
  if (type?.trim().toLowerCase() !== 'form-data') return null;
  const out = new Map<string, string>();
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq === -1) return null;
    const key = param.slice(0, eq).trim().toLowerCase();
    let text = param.slice(eq + 1).trim();
    if (text.startsWith('"')) {
      if (text.length < 2 || !text.endsWith('"')) return null;
      text = text.slice(1, -1);
      if (text.includes('"') || text.includes('\\')) return null;
    } else if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(text)) {
      return null;
    }
    if (key.length === 0 || out.has(key)) return null;
    out.set(key, text);
  }
  return out;
}

/** The name of a part from its header block (the text between the delimiter line and the blank line). */
function partName(headers: string): string | null {
  let name: string | null = null;
  let seenType = false;
  for (const line of headers.split('\r\n')) {
    const colon = line.indexOf(':');
    // A line without a colon, or one starting with white space (obsolete folding): not canonical.
    if (colon <= 0 || line[0] === ' ' || line[0] === '\t') return null;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === 'content-disposition' && name === null) {
      const params = dispositionOf(value);
      const named = params?.get('name');
      if (!params || named === undefined || [...params.keys()].some((k) => k !== 'name' && k !== 'filename')) {
        return null;
      }
      name = named;
    } else if (key === 'content-type' && !seenType) {
      seenType = true;
    } else {
      return null;
    }
  }
  return name;
}

/** Largest part header block read on the fast path (busboy's limit is 16 KiB). */
const MAX_HEADER_BYTES = 4096;

/**
 * The metadata and image parts of a whole one-request body, or null when the body is not in the
 * canonical shape (the route then parses it with the general reader).
 */
export function splitSampleForm(body: Buffer, boundary: string): SampleForm | null {
  const open = Buffer.from(`--${boundary}\r\n`);
  if (body.length < open.length || !body.subarray(0, open.length).equals(open)) return null;
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: { name: string; body: Buffer }[] = [];
  let at = open.length;
  for (;;) {
    const headerEnd = body.indexOf('\r\n\r\n', at, 'latin1');
    if (headerEnd === -1 || headerEnd - at > MAX_HEADER_BYTES) return null;
    const name = partName(body.toString('latin1', at, headerEnd));
    if (name === null) return null;
    const start = headerEnd + 4;
    const end = body.indexOf(delimiter, start);
    if (end === -1) return null;
    parts.push({ name, body: body.subarray(start, end) });
    const after = end + delimiter.length;
    // `--` closes the body (an epilogue may follow); CRLF starts the next part.
    if (body[after] === 0x2d && body[after + 1] === 0x2d) break;
    if (body[after] !== 0x0d || body[after + 1] !== 0x0a || parts.length === 2) return null;
    at = after + 2;
  }
  const [metadata, image] = parts;
  if (parts.length !== 2 || metadata?.name !== 'metadata' || image?.name !== 'image') return null;
  return { metadata: metadata.body, image: image.body };
}
