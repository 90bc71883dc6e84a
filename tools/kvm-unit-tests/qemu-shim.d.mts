/** Types for tools/kvm-unit-tests/qemu-shim.mjs. */
export const QEMU_VERSION: string;
export const MAX_VCPUS: number;
export class ShimError extends Error {}
export function parseQemuMem(text: string): number;
export function parseQemuSmp(text: string): number;
export function parseQemuInitrd(text: string): { path: string; cmdline: string }[];
export type MappedCommand =
  | { kind: 'run'; kernel: string; runArgs: string[]; warnings: string[] }
  | { kind: 'help' | 'version' | 'device-help' | 'machine-help' | 'cpu-help' };
export function mapQemuArgs(argv: readonly string[], opts?: { extraRunArgs?: readonly string[] }): MappedCommand;
export function extraRunArgs(env: Record<string, string | undefined>): string[];
export function helpText(): string;
export function deviceHelpText(): string;
export function shimMain(argv: string[]): Promise<number>;
