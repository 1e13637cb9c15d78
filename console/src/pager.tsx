import { useCallback, useState } from 'preact/hooks';

/* Cursor paging for the list pages: the server hands out an opaque `nextCursor`, so paging back
 * means keeping the cursors of the pages before this one. */

export interface CursorPages {
  /** The cursor of the page shown (undefined on the first page). */
  readonly cursor: string | undefined;
  /** 1 on the first page. */
  readonly number: number;
  readonly back: () => void;
  readonly forward: (nextCursor: string) => void;
  /** Back to the first page (a filter changed). */
  readonly reset: () => void;
}

export function useCursorPages(): CursorPages {
  // Cursors of the pages before this one (paging back), and this page's.
  const [cursors, setCursors] = useState<readonly (string | undefined)[]>([undefined]);
  const back = useCallback(
    () => setCursors((previous) => (previous.length > 1 ? previous.slice(0, -1) : previous)),
    [],
  );
  const forward = useCallback((next: string) => setCursors((previous) => [...previous, next]), []);
  const reset = useCallback(() => setCursors([undefined]), []);
  return { cursor: cursors.at(-1), number: cursors.length, back, forward, reset };
}

/** Previous / page number / next; `hideAlone` hides it while there is a single page. */
export function Pager(props: {
  pages: CursorPages;
  nextCursor: string | null | undefined;
  previousLabel?: string;
  nextLabel?: string;
  hideAlone?: boolean;
}) {
  const { pages, nextCursor } = props;
  if (props.hideAlone && pages.number <= 1 && !nextCursor) return null;
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={pages.number <= 1} onClick={pages.back}>
        ← {props.previousLabel ?? 'Previous'}
      </button>
      <span>Page {pages.number}</span>
      <button type="button" disabled={!nextCursor} onClick={() => nextCursor && pages.forward(nextCursor)}>
        {props.nextLabel ?? 'Next'} →
      </button>
    </nav>
  );
}
