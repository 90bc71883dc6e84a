/** The contract of a pane: pure text from a snapshot and the UI state, so panes are testable without a terminal. */
import type { SessionSnapshot } from '../../machine/debug/protocol.js';
import type { PaneId, UiState } from '../ui-state.js';

export interface PaneContent {
  title: string;
  /** blessed-tagged lines, not yet cut to width. */
  lines: string[];
  /** Where the pane sits when the user has not scrolled: the tail (logs), the top, or `anchor` kept in view (RIP). */
  follow: 'tail' | 'top' | 'anchor';
  anchor?: number;
}

export interface PaneRenderer {
  id: PaneId;
  render(snap: SessionSnapshot | null, ui: UiState, width: number): PaneContent;
}

/** A pane whose part failed shows why, instead of stale or empty content. */
export function errorLines(snap: SessionSnapshot | null, part: keyof SessionSnapshot['errors']): string[] | null {
  const err = snap?.errors[part];
  return err ? [`{red-fg}${err.replace(/[{}]/g, '')}{/red-fg}`] : null;
}
