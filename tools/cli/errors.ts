/**
 * How a failed command ends: a usage or input error is one line naming the
 * problem (no stack trace: the input was the user's), an internal error keeps
 * its stack. With --json, stdout also gets a JSON error document, so a script
 * reading stdout always gets JSON.
 */
import { UsageError } from './args.js';
import { cliOutput } from './stdout.js';

const USAGE_CODES = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL']);
/** Bad input (images, files, blocks, snapshots, registries) gets its message, not a stack trace. */
const INPUT_ERRORS = new Set(['FaultSpecError', 'MultibootError', 'MultibootInfoError', 'BootInfoParseError', 'HandoffParseError', 'SnapshotFormatError', 'StateError', 'RegistryError', 'MemoryError', 'UnicornLoadError', 'FrameAllocatorError', 'EptError', 'InputFileError', 'SnapshotStoreError', 'SuiteError', 'JunitError', 'OpenBusExhausted', 'ProfileError', 'SecurityError', 'LinuxImageError', 'LinuxLoadError', 'MigrationError', 'MigrationStreamError', 'BackupError', 'ToolkitError', 'FunctionElfError', 'TransactionError', 'OciDocumentError', 'SpecError']);

export interface CliErrorDocument {
  error: { kind: string; message: string };
  exit: { reason: 'error'; code: 2 };
}

/** A failed file-system call on a path the user gave (it carries errno and syscall). */
const isSystemError = (e: Error & { code?: string; syscall?: string }): boolean => typeof e.syscall === 'string' && /^E[A-Z0-9]+$/.test(e.code ?? '');

export function errorDocument(e: unknown): CliErrorDocument {
  const err = e instanceof Error ? e : new Error(String(e));
  const kind = err instanceof UsageError || USAGE_CODES.has((err as { code?: string }).code ?? '') ? 'usage' : err.name;
  return { error: { kind, message: err.message }, exit: { reason: 'error', code: 2 } };
}

/** Prints the error (stderr; and stdout as JSON when `json`), returns the exit status 2. */
export function reportCliError(e: unknown, json: boolean): number {
  const { out, err: errOut } = cliOutput();
  const err: Error & { code?: string; syscall?: string } = e instanceof Error ? e : new Error(String(e));
  if (err instanceof UsageError || USAGE_CODES.has(err.code ?? '')) errOut.write(`firmament: ${err.message}\n`);
  else if (INPUT_ERRORS.has(err.name)) errOut.write(`firmament: ${err.name}: ${err.message}\n`);
  else if (isSystemError(err)) errOut.write(`firmament: ${err.message}\n`);
  else errOut.write(`firmament: ${err.stack ?? err.message}\n`);
  if (json) out.write(JSON.stringify(errorDocument(err), null, 2) + '\n');
  return 2;
}
