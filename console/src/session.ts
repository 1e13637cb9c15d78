import { type ApiClient, type ApiRole, createApiClient } from '@edgeloop/protocol';

/* The signed-in token: kept in sessionStorage (gone when the tab closes), never in localStorage. */

const KEY = 'edgeloop.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, token);
}

export type Session = {
  readonly client: ApiClient;
  readonly name: string;
  readonly role: ApiRole;
  /** Operators and admins may act (command, pause, abort, ...); viewers only read. */
  readonly canAct: boolean;
};

/** Checks a token with the API; the session, or the failure in words. */
export async function signIn(token: string): Promise<{ ok: true; session: Session } | { ok: false; message: string }> {
  const client = createApiClient({ baseUrl: '', token });
  const self = await client.self();
  if (!self.ok) {
    return {
      ok: false,
      message: self.error.code === 'unauthorized' ? 'That token is not valid.' : self.error.message,
    };
  }
  return {
    ok: true,
    session: { client, name: self.value.name, role: self.value.role, canAct: self.value.role !== 'viewer' },
  };
}
