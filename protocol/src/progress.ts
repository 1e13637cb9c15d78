/*
 * A one-line progress display for long transfers and runs (samples pull, datasets export, the
 * agent's eval over a dataset): bytes, rate and items, redrawn in place on stderr at most every `intervalMs`, and only when stderr is a terminal
 * (pipes and logs get nothing). Pure formatting lives in formatProgress.
 */

export type ProgressState = {
  readonly label: string;
  readonly bytes: number;
  readonly elapsedMs: number;
  readonly items?: number;
  readonly totalItems?: number;
};

/** `1.5 MB`, `820 kB`, `12 B` (SI units). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatProgress(state: ProgressState): string {
  const seconds = state.elapsedMs / 1000;
  const rate = seconds > 0 ? `${formatBytes(Math.round(state.bytes / seconds))}/s` : '-';
  const items =
    state.items === undefined ? '' : `  ${state.items}${state.totalItems === undefined ? '' : `/${state.totalItems}`}`;
  return `${state.label}${items}  ${formatBytes(state.bytes)}  ${rate}`;
}

export type Progress = {
  /** Counts bytes (and an item when `item`) and redraws when due. */
  add(bytes: number, item?: boolean): void;
  setTotal(items: number): void;
  /** Draws the final line and ends it with a newline. */
  done(): void;
};

export function createProgress(deps: {
  readonly label: string;
  readonly enabled: boolean;
  readonly write: (text: string) => void;
  readonly now?: () => number;
  readonly intervalMs?: number;
}): Progress {
  const now = deps.now ?? (() => Date.now());
  const interval = deps.intervalMs ?? 200;
  const started = now();
  let bytes = 0;
  let items = 0;
  let totalItems: number | undefined;
  let drawnAt = Number.NEGATIVE_INFINITY;
  const draw = () => {
    drawnAt = now();
    deps.write(
      `\r\x1b[2K${formatProgress({ label: deps.label, bytes, elapsedMs: drawnAt - started, items, ...(totalItems !== undefined ? { totalItems } : {}) })}`,
    );
  };
  return {
    add(count, item = false) {
      bytes += count;
      if (item) items++;
      if (deps.enabled && now() - drawnAt >= interval) draw();
    },
    setTotal(count) {
      totalItems = count;
    },
    done() {
      if (!deps.enabled) return;
      draw();
      deps.write('\n');
    },
  };
}
