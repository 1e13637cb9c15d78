import { type Column, desc, type SQL, sql } from 'drizzle-orm';
import type { MessageCursor } from './repositories.ts';

/*
 * The order of a device's message history, the same in both dialects: newest first by the
 * control plane's receive time, then the device's seq, then the row id (arrival within a batch).
 * The device's own ts is kept as data only: a device clock in the year 275760 cannot sort first.
 * The index messages_device_channel_received_idx (device_id, channel, received_at, seq) serves it.
 */

type HistoryColumns = { readonly receivedAt: Column; readonly seq: Column; readonly id: Column };

/** Rows strictly before the cursor in history order (a row-value comparison both dialects index). */
export function historyBefore(columns: HistoryColumns, cursor: MessageCursor): SQL {
  return sql`(${columns.receivedAt}, ${columns.seq}, ${columns.id}) < (${cursor.receivedAt}, ${cursor.seq}, ${cursor.id})`;
}

/** ORDER BY of the history, newest first. */
export function historyOrder(columns: HistoryColumns): SQL[] {
  return [desc(columns.receivedAt), desc(columns.seq), desc(columns.id)];
}
