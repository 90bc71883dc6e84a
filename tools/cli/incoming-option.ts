/**
 * `run --incoming`: its help text and how to recognise it, apart from the
 * migration code, which loads only when a migration runs (start-up).
 */
export const INCOMING_HELP = `  --incoming tcp:HOST:PORT
                      instead of an image: wait for a VM migrated from another machine
                      (firmament migrate / the monitor's migrate), then run it; port 0 picks one
                      (printed on stderr). --mem is the RAM this machine offers (default 256M),
                      --populate prepopulate (default) or lazy decides how the VM's memory is mapped`;

export function isIncomingRun(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--incoming' || a.startsWith('--incoming='));
}
