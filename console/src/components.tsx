import type { DeviceStatus, Failure, HealthState, Result } from '@edgeloop/protocol';
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/* Small parts the pages share. Status is always a shape and a word, never colour alone. */

const STATUS_SHAPE: Record<DeviceStatus, string> = { online: '●', offline: '○', unknown: '◌' };
const HEALTH_SHAPE: Record<HealthState, string> = { healthy: '✓', degraded: '▲', offline: '○', unknown: '?' };

export function StatusBadge(props: { status: DeviceStatus }) {
  return (
    <span class={`badge status-${props.status}`} data-status={props.status}>
      <span aria-hidden="true">{STATUS_SHAPE[props.status]}</span> {props.status}
    </span>
  );
}

export function HealthBadge(props: { health: HealthState; reasons?: readonly string[] }) {
  const reasons = props.reasons && props.reasons.length > 0 ? props.reasons.join(', ') : null;
  return (
    <span class={`badge health-${props.health}`} data-health={props.health} title={reasons ?? undefined}>
      <span aria-hidden="true">{HEALTH_SHAPE[props.health]}</span> {props.health}
      {reasons ? <span class="reasons"> ({reasons})</span> : null}
    </span>
  );
}

const VERDICT_SHAPE: Record<string, string> = {
  pass: '✓',
  fail: '✗',
  inconclusive: '…',
  'not-applicable': '–',
  running: '▶',
  paused: '❚❚',
  completed: '✓',
  rolled_back: '↺',
  aborted: '■',
};

/** A verdict or rollout status with its shape. */
export function StateBadge(props: { state: string }) {
  return (
    <span class={`badge state-${props.state}`} data-state={props.state}>
      <span aria-hidden="true">{VERDICT_SHAPE[props.state] ?? '•'}</span> {props.state.replace('_', ' ')}
    </span>
  );
}

export function ErrorNote(props: { error: Failure | null }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert">
      <strong>{props.error.code}</strong>: {props.error.message}
    </p>
  );
}

/** Loads with `load` when `deps` change; `reload` loads again keeping the shown value meanwhile. */
export function useResult<T>(load: (signal: AbortSignal) => Promise<Result<T>>, deps: readonly unknown[]) {
  const [state, setState] = useState<{ value: T | null; error: Failure | null; loading: boolean }>({
    value: null,
    error: null,
    loading: true,
  });
  // One controller per mounted view: it aborts on unmount. A reload does not abort the request
  // before it; the older answer is just not shown.
  const current = useRef<AbortController | null>(null);
  const latest = useRef(0);
  const reload = useCallback(() => {
    current.current ??= new AbortController();
    const controller = current.current;
    const call = ++latest.current;
    setState((previous) => ({ ...previous, loading: true }));
    void load(controller.signal).then((result) => {
      if (controller.signal.aborted || call !== latest.current) return;
      setState((previous) =>
        result.ok
          ? { value: result.value, error: null, loading: false }
          : { value: previous.value, error: result.error, loading: false },
      );
    });
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  useEffect(
    () => () => {
      current.current?.abort();
      current.current = null;
    },
    [],
  );
  // `update` changes the shown value from the latest state, not from the value a listener saw when
  // it subscribed: live batches arrive faster than effects re-subscribe (effects run after paint).
  const update = useCallback(
    (change: (value: T) => T) =>
      setState((previous) => (previous.value === null ? previous : { ...previous, value: change(previous.value) })),
    [],
  );
  return { ...state, reload, update, setValue: (value: T) => setState({ value, error: null, loading: false }) };
}

/**
 * A button that asks before it acts: a modal dialog (Escape cancels, focus stays inside) with an
 * optional reason, then `run(reason)`.
 */
export function ConfirmButton(props: {
  label: string;
  title: string;
  children: ComponentChildren;
  danger?: boolean;
  run: (reason: string) => Promise<Failure | null>;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  return (
    <>
      <button
        type="button"
        class={props.danger ? 'danger' : undefined}
        onClick={() => {
          setError(null);
          setReason('');
          dialog.current?.showModal();
        }}
      >
        {props.label}
      </button>
      <dialog ref={dialog} aria-label={props.title}>
        <form
          method="dialog"
          onSubmit={async (event) => {
            event.preventDefault();
            setBusy(true);
            const failure = await props.run(reason);
            setBusy(false);
            if (failure) setError(failure);
            else dialog.current?.close();
          }}
        >
          <h2>{props.title}</h2>
          {props.children}
          <label>
            Reason (for the record)
            <input value={reason} onInput={(event) => setReason(event.currentTarget.value)} maxLength={1024} />
          </label>
          <ErrorNote error={error} />
          <div class="actions">
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
            <button type="submit" class={props.danger ? 'danger' : 'primary'} disabled={busy}>
              {busy ? 'Working…' : `Yes, ${props.label.toLowerCase()}`}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
