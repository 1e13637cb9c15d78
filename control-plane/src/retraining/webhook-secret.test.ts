import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSecretBox } from './webhook-secret.ts';

describe('webhook secret box', () => {
  const pepper = randomBytes(32);

  it('seals a secret so that the stored text does not hold it, and opens it again with the same pepper', () => {
    const box = createSecretBox(pepper);
    const sealed = box.seal('receiver-shared-secret-1234', 'det');
    expect(sealed).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(sealed).not.toContain('receiver-shared-secret');
    expect(Buffer.from(sealed.split('.')[3]!, 'base64url').toString('utf8')).not.toContain('receiver');
    expect(createSecretBox(Buffer.from(pepper)).open(sealed, 'det')).toBe('receiver-shared-secret-1234');
    // A fresh IV each time: the same secret seals differently.
    expect(box.seal('receiver-shared-secret-1234', 'det')).not.toBe(sealed);
  });

  it('opens nothing under another pepper, for another model name, or after a byte changed', () => {
    const sealed = createSecretBox(pepper).seal('receiver-shared-secret-1234', 'det');
    expect(createSecretBox(randomBytes(32)).open(sealed, 'det')).toBeNull();
    expect(createSecretBox(pepper).open(sealed, 'cls')).toBeNull();
    const parts = sealed.split('.');
    const text = Buffer.from(parts[3]!, 'base64url');
    text[0] = (text[0] ?? 0) ^ 1;
    expect(
      createSecretBox(pepper).open([parts[0], parts[1], parts[2], text.toString('base64url')].join('.'), 'det'),
    ).toBeNull();
    expect(createSecretBox(pepper).open('plain-text', 'det')).toBeNull();
  });
});
