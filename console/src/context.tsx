import type { ServerEvent } from '@edgeloop/protocol';
import { type ComponentChildren, createContext } from 'preact';
import { useContext, useEffect } from 'preact/hooks';
import type { EventHub } from './live.ts';
import type { Session } from './session.ts';

/* What every page shares: the session, the live event hub, and navigation without reloads. */

export const SessionContext = createContext<Session | null>(null);
export const HubContext = createContext<EventHub | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('no session');
  return session;
}

/** Subscribes to the live event batches while the component is mounted. */
export function useLiveEvents(listener: (batch: readonly ServerEvent[]) => void, deps: readonly unknown[]): void {
  const hub = useContext(HubContext);
  useEffect(() => hub?.subscribe(listener), [hub, ...deps]);
}

/** Client-side navigation: push the path and tell the app. */
export function navigate(path: string): void {
  history.pushState(null, '', path);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** A link that navigates without a reload (and still opens in a new tab with a modifier). */
export function Link(props: { href: string; children: ComponentChildren; class?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}
