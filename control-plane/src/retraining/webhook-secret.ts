import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/*
 * Webhook secrets at rest. A signing secret must be readable again (the control plane signs every
 * delivery with it), so it cannot be hashed like device secrets and API tokens. It is sealed with
 * AES-256-GCM under a key derived by HKDF-SHA256 from the server pepper (`<dataDir>/server.key`,
 * secrets.ts) with its own label, and the model name as associated data: the database alone does
 * not reveal it, and a sealed secret copied to another policy's row does not open.
 *
 *   v1.<iv base64url>.<tag base64url>.<ciphertext base64url>
 */

export type SecretBox = {
  seal(secret: string, context: string): string;
  /** The secret, or null when the text was not sealed by this key for this context. */
  open(sealed: string, context: string): string | null;
};

const INFO = 'edgeloop retraining webhook secret v1';

export function createSecretBox(pepper: Buffer): SecretBox {
  if (pepper.length < 16) throw new Error('server pepper must be at least 16 bytes');
  const key = Buffer.from(hkdfSync('sha256', pepper, Buffer.alloc(0), INFO, 32));
  return {
    seal(secret, context) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const text = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return ['v1', iv, cipher.getAuthTag(), text]
        .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
        .join('.');
    },
    open(sealed, context) {
      const [version, iv, tag, text] = sealed.split('.');
      if (version !== 'v1' || iv === undefined || tag === undefined || text === undefined) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(text, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        return null;
      }
    },
  };
}
