/** One line of `npm run bench`'s table, and the statistics every bench module quotes. */
export interface BenchRow {
  metric: string;
  firmament: string;
  qemu: string;
  ratio: string;
  note: string;
}

/** Median of the finite values (mean of the middle two for an even count); NaN when there are none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The q-quantile by rank (the value below which a q share of the samples fall). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
