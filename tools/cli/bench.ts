export const BENCH_HELP = 'firmament bench: see bench/README';
export async function benchCommand(_argv: string[]): Promise<number> {
  const { runBench } = await import('../../bench/run.js');
  return runBench(_argv);
}
