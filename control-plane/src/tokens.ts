import { randomBytes } from 'node:crypto';
import { fail, ok, type Result } from '@edgeloop/protocol';
import type { ApiRole, ApiToken, ApiTokenRepository } from './db/repositories.ts';
import { generateSecret, type SecretHasher } from './secrets.ts';
import type { Clock } from './time.ts';

/*
 * API bearer tokens: random 256-bit secrets stored as keyed hashes (see secrets.ts), with a role.
 *   admin     everything, including enrollment, revocation, tokens and dead letters
 *   operator  reads, plus labels, desired state and commands
 *   viewer    reads only
 */

export const ROLE_RANK: Readonly<Record<ApiRole, number>> = { viewer: 0, operator: 1, admin: 2 };

export function roleAllows(role: ApiRole, needed: ApiRole): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed];
}

/** Generated tokens carry a prefix so secret scanners and people can recognise them. */
export function generateApiToken(): string {
  return `elt_${generateSecret()}`;
}

export type TokenService = {
  /** The active token behind a bearer value, or null. */
  authenticate(bearer: string): Promise<ApiToken | null>;
  create(name: string, role: ApiRole): Promise<{ token: ApiToken; secret: string }>;
  list(): Promise<ApiToken[]>;
  revoke(id: string): Promise<Result<void, 'not_found' | 'conflict'>>;
  /**
   * Sets up the bootstrap admin token: `adminToken` (from EDGELOOP_ADMIN_TOKEN) replaces the
   * previous bootstrap token; without it, one is generated only when no admin token exists.
   * Returns the generated plaintext (to print once) or null.
   */
  bootstrap(adminToken: string | undefined): Promise<{ generated: string | null }>;
};

export function createTokenService(deps: {
  readonly tokens: ApiTokenRepository;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
}): TokenService {
  const { tokens, hasher, clock } = deps;
  const newId = () => randomBytes(6).toString('hex');
  return {
    async authenticate(bearer) {
      if (bearer.length < 16 || bearer.length > 256) return null;
      const hash = hasher.hash(bearer);
      const found = await tokens.findByHash(hash);
      // The lookup is by hash; the constant-time comparison guards against a loose index match.
      if (!found || !hasher.verify(bearer, found.tokenHash)) return null;
      const { tokenHash: _hidden, ...token } = found;
      return token;
    },
    async create(name, role) {
      const secret = generateApiToken();
      const token = await tokens.create({ id: newId(), name, role, tokenHash: hasher.hash(secret), now: clock.now() });
      return { token, secret };
    },
    list() {
      return tokens.list();
    },
    async revoke(id) {
      const all = await tokens.list();
      const token = all.find((t) => t.id === id && t.revokedAt === null);
      if (!token) return fail('not_found', `no active token ${id}`);
      if (token.role === 'admin' && (await tokens.activeAdminCount()) <= 1) {
        return fail('conflict', 'this is the last admin token; set EDGELOOP_ADMIN_TOKEN and restart to replace it');
      }
      await tokens.revoke(id, clock.now());
      return ok(undefined);
    },
    async bootstrap(adminToken) {
      const now = clock.now();
      if (adminToken !== undefined) {
        await tokens.replaceBootstrap({
          id: newId(),
          name: 'bootstrap admin',
          role: 'admin',
          tokenHash: hasher.hash(adminToken),
          now,
        });
        return { generated: null };
      }
      if ((await tokens.activeAdminCount()) > 0) return { generated: null };
      const secret = generateApiToken();
      await tokens.replaceBootstrap({
        id: newId(),
        name: 'bootstrap admin',
        role: 'admin',
        tokenHash: hasher.hash(secret),
        now,
      });
      return { generated: secret };
    },
  };
}
