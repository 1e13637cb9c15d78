import { type ApiClient, type ApiFailure, createApiClient } from '@edgeloop/protocol';
import type { ParsedArgs } from './args.ts';
import { UsageError } from './args.ts';

/*
 * The CLI's side of the one typed API client (protocol/src/client.ts): where it points (--url,
 * EDGELOOP_URL) and with which token, and the words of a failed call. Every failure names the
 * URL and its cause: a control plane that cannot be reached says why (connect ECONNREFUSED,
 * ENOTFOUND, a TLS error), an API error shows the status and the API's own code and message.
 */

export type Env = Readonly<Record<string, string | undefined>>;

/** The typed client for the --url/--token flags (or EDGELOOP_URL/EDGELOOP_TOKEN). */
export function createClient(parsed: ParsedArgs, env: Env, doFetch: typeof fetch): ApiClient {
  const baseUrl = (parsed.flags.get('url')?.[0] ?? env.EDGELOOP_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
  const token = parsed.flags.get('token')?.[0] ?? env.EDGELOOP_TOKEN;
  if (!token) throw new UsageError('a token is needed: --token TOKEN or EDGELOOP_TOKEN');
  try {
    new URL(baseUrl);
  } catch {
    throw new UsageError(`--url must be an absolute URL such as http://localhost:8080, got "${baseUrl}"`);
  }
  return createApiClient({ baseUrl, token, fetch: doFetch });
}

/** A failed call in the CLI's words: the URL and the network's reason, or the status and the API's code. */
export function describeFailure(failure: ApiFailure): string {
  if (failure.code === 'network' || failure.status === null) {
    return `cannot reach ${failure.url}: ${failure.message}${untrustedCertificateHint(failure)}`;
  }
  if (failure.code === 'bad_response') return `unexpected answer from ${failure.url}: ${failure.message}`;
  return `${failure.method} ${failure.url} failed with ${failure.status}: ${failure.code}: ${failure.message}`;
}

/** A certificate Node does not trust (one from `edgeloop ca server-cert`): say how to trust its CA. */
function untrustedCertificateHint(failure: ApiFailure): string {
  if (!failure.url.startsWith('https:') || !/certificate|self[- ]signed/i.test(failure.message)) return '';
  return ' (a certificate from edgeloop ca server-cert: set NODE_EXTRA_CA_CERTS=<data-dir>/ca/ca.crt to trust the fleet CA)';
}
