import { useEffect, useMemo, useState } from 'preact/hooks';
import { HubContext, Link, SessionContext } from './context.tsx';
import { viewerTimeZone } from './format.ts';
import { createEventHub } from './live.ts';
import { DatasetsPage } from './pages/datasets.tsx';
import { DevicePage } from './pages/device.tsx';
import { FleetPage } from './pages/fleet.tsx';
import { ModelsPage } from './pages/models.tsx';
import { RolloutPage } from './pages/rollout.tsx';
import { RolloutsPage } from './pages/rollouts.tsx';
import { SamplesPage } from './pages/samples.tsx';
import { SignInPage } from './pages/sign-in.tsx';
import { SitesPage } from './pages/sites.tsx';
import { parseRoute, type Route, tokenFromHash } from './route.ts';
import { type Session, signIn, storedToken, storeToken } from './session.ts';

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = () => {
      setRoute(parseRoute(location.pathname));
      window.scrollTo(0, 0);
    };
    addEventListener('popstate', update);
    return () => removeEventListener('popstate', update);
  }, []);
  return route;
}

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(true);
  const route = useRoute();

  useEffect(() => {
    const handed = tokenFromHash(location.hash);
    if (handed) {
      storeToken(handed);
      history.replaceState(null, '', location.pathname + location.search);
    }
    const token = storedToken();
    if (!token) {
      setChecking(false);
      return;
    }
    void signIn(token).then((result) => {
      if (result.ok) setSession(result.session);
      else storeToken(null);
      setChecking(false);
    });
  }, []);

  if (checking) return <p class="loading">Loading…</p>;
  if (!session) {
    return (
      <SignInPage
        onSignedIn={(next, token) => {
          storeToken(token);
          setSession(next);
        }}
      />
    );
  }
  return (
    <SignedIn
      session={session}
      route={route}
      onSignOut={() => {
        storeToken(null);
        setSession(null);
      }}
    />
  );
}

function SignedIn(props: { session: Session; route: Route; onSignOut: () => void }) {
  const { session, route } = props;
  const hub = useMemo(
    () =>
      createEventHub({
        open: (signal, onOpen) => session.client.events({ signal, onOpen }),
        schedule: (run) => requestAnimationFrame(run),
        sleep: (ms, signal) =>
          new Promise((resolve) => {
            const timer = setTimeout(resolve, ms);
            signal.addEventListener('abort', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      }),
    [session],
  );
  useEffect(() => () => hub.stop(), [hub]);
  const [liveState, setLiveState] = useState(hub.state());
  useEffect(() => {
    const unsubscribe = hub.onState(() => setLiveState(hub.state()));
    setLiveState(hub.state());
    return unsubscribe;
  }, [hub]);

  const section = route.page === 'device' ? 'fleet' : route.page === 'rollout' ? 'rollouts' : route.page;
  return (
    <SessionContext.Provider value={session}>
      <HubContext.Provider value={hub}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <strong class="brand">edgeloop</strong>
          <nav aria-label="Main">
            {(
              [
                ['fleet', '/', 'Fleet'],
                ['sites', '/sites', 'Sites'],
                ['rollouts', '/rollouts', 'Rollouts'],
                ['models', '/models', 'Models'],
                ['samples', '/samples', 'Samples'],
                ['datasets', '/datasets', 'Datasets'],
              ] as const
            ).map(([key, href, label]) => (
              <span key={key} aria-current={section === key ? 'page' : undefined}>
                <Link href={href}>{label}</Link>
              </span>
            ))}
          </nav>
          <span class="who" data-testid="who">
            <span class={`live live-${liveState}`} title={`live updates: ${liveState}`}>
              {liveState === 'live' ? '● live' : liveState === 'retrying' ? '○ reconnecting' : '○ connecting'}
            </span>{' '}
            {session.name} <span class="role">({session.role})</span>{' '}
            <button type="button" class="link" onClick={props.onSignOut}>
              Sign out
            </button>
          </span>
        </header>
        <main id="main" tabIndex={-1}>
          <Page route={route} />
        </main>
        <footer class="foot">Times in {viewerTimeZone()}</footer>
      </HubContext.Provider>
    </SessionContext.Provider>
  );
}

function Page(props: { route: Route }) {
  const { route } = props;
  switch (route.page) {
    case 'fleet':
      return <FleetPage />;
    case 'device':
      return <DevicePage id={route.id} />;
    case 'rollouts':
      return <RolloutsPage />;
    case 'rollout':
      return <RolloutPage id={route.id} />;
    case 'models':
      return <ModelsPage />;
    case 'sites':
      return <SitesPage />;
    case 'samples':
      return <SamplesPage />;
    case 'datasets':
      return <DatasetsPage />;
    case 'not-found':
      return (
        <section>
          <h1>Not found</h1>
          <p>
            No page at <code>{route.path}</code>. <Link href="/">Back to the fleet</Link>
          </p>
        </section>
      );
  }
}
