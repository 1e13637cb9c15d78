/* The console's pages, by URL path (the server answers index.html for every one of them). */

export type Route =
  | { readonly page: 'fleet' }
  | { readonly page: 'device'; readonly id: string }
  | { readonly page: 'rollouts' }
  | { readonly page: 'rollout'; readonly id: string }
  | { readonly page: 'models' }
  | { readonly page: 'sites' }
  | { readonly page: 'samples' }
  | { readonly page: 'datasets' }
  | { readonly page: 'not-found'; readonly path: string };

export function parseRoute(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(safeDecode);
  if (parts.length === 0) return { page: 'fleet' };
  const [head, id, ...rest] = parts;
  if (rest.length === 0) {
    if (head === 'devices' && id) return { page: 'device', id };
    if (head === 'devices' && !id) return { page: 'fleet' };
    if (head === 'rollouts') return id ? { page: 'rollout', id } : { page: 'rollouts' };
    if (head === 'models' && !id) return { page: 'models' };
    if (head === 'sites' && !id) return { page: 'sites' };
    if (head === 'samples' && !id) return { page: 'samples' };
    if (head === 'datasets' && !id) return { page: 'datasets' };
  }
  return { page: 'not-found', path: pathname };
}

export function pathOf(route: Route): string {
  switch (route.page) {
    case 'fleet':
      return '/';
    case 'device':
      return `/devices/${encodeURIComponent(route.id)}`;
    case 'rollouts':
      return '/rollouts';
    case 'rollout':
      return `/rollouts/${encodeURIComponent(route.id)}`;
    case 'models':
      return '/models';
    case 'sites':
      return '/sites';
    case 'samples':
      return '/samples';
    case 'datasets':
      return '/datasets';
    case 'not-found':
      return route.path;
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A token handed over in the URL fragment (`/#token=...`, as `npm start` prints it), or null. */
export function tokenFromHash(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token');
  return token && token.length > 0 ? token : null;
}
