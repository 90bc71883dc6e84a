/**
 * Where each pane goes for a terminal size. Two arrangements: the full one
 * (at least 110x34, designed for 120x40) and a compact one that keeps every
 * pane on screen down to 80x24; `z` zooms the focused pane to the whole screen.
 */
import { PANE_IDS, type PaneId } from './ui-state.js';

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

export type Layout = Record<PaneId, Rect>;

/** Column/row fractions per pane: [left, top, width, height] with integer rounding done at the end. */
type Plan = Record<PaneId, [number, number, number, number]>;

/** 120x40: CPU and disassembly tall in the middle; logs and memory below. Units are a 120x39 grid. */
const FULL: Plan = {
  timeline: [0, 0, 30, 11],
  vcpus: [0, 11, 30, 7],
  security: [0, 18, 30, 6],
  cpu: [30, 0, 46, 24],
  disasm: [76, 0, 44, 24],
  console: [0, 24, 43, 8],
  memory: [43, 24, 77, 8],
  events: [0, 32, 43, 7],
  pagewalk: [43, 32, 77, 7],
};
const FULL_GRID = { cols: 120, rows: 39 };

/** 80x24: every pane visible (small ones scroll), CPU and disassembly first. Units are an 80x23 grid. */
const COMPACT: Plan = {
  cpu: [0, 0, 43, 10],
  disasm: [43, 0, 37, 10],
  timeline: [0, 10, 27, 5],
  console: [27, 10, 53, 5],
  memory: [0, 15, 53, 4],
  vcpus: [53, 15, 27, 4],
  events: [0, 19, 40, 4],
  pagewalk: [40, 19, 20, 4],
  security: [60, 19, 20, 4],
};
const COMPACT_GRID = { cols: 80, rows: 23 };

export function isFullSize(cols: number, rows: number): boolean {
  return cols >= 110 && rows >= 34;
}

/** Pane rectangles for a `cols` x `rows` terminal; the last row is the status bar. */
export function computeLayout(cols: number, rows: number, zoomed: PaneId | null = null): Layout {
  const usable = Math.max(1, rows - 1);
  if (zoomed) {
    const all = { left: 0, top: 0, width: cols, height: usable };
    return Object.fromEntries(PANE_IDS.map((id) => [id, id === zoomed ? all : { left: 0, top: 0, width: 0, height: 0 }])) as Layout;
  }
  const [plan, grid] = isFullSize(cols, rows) ? [FULL, FULL_GRID] : [COMPACT, COMPACT_GRID];
  const x = (u: number): number => Math.round((u * cols) / grid.cols);
  const y = (u: number): number => Math.round((u * usable) / grid.rows);
  return Object.fromEntries(
    PANE_IDS.map((id) => {
      const [l, t, w, h] = plan[id];
      return [id, { left: x(l), top: y(t), width: x(l + w) - x(l), height: y(t + h) - y(t) }];
    }),
  ) as Layout;
}
