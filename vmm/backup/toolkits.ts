/**
 * The backup toolkit registry (docs/functions.md, "Backup"): one JSON file per
 * toolkit in vmm/backup/toolkits/ (or a directory of the user's), mapping the
 * profiles guests declare to a way of readying them for a snapshot. New
 * toolkits are new files; the service and the guests do not change.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_TOOLKITS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'toolkits');

/** What the backup service can do with a guest; a toolkit picks one and its parameters. */
export type BackupMethod = 'agent-quiesce' | 'crash-consistent';
const METHODS: readonly BackupMethod[] = ['agent-quiesce', 'crash-consistent'];

export interface Toolkit {
  name: string;
  description: string;
  profiles: string[];
  method: BackupMethod;
  quiesceTimeoutMs: number;
  /** Used for guests whose profile no toolkit names. */
  default: boolean;
  file: string;
}

export class ToolkitError extends Error {
  override name = 'ToolkitError';
}

export function parseToolkit(text: string, file: string): Toolkit {
  let d: unknown;
  try {
    d = JSON.parse(text);
  } catch (e) {
    throw new ToolkitError(`${file}: not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new ToolkitError(`${file}: expected an object`);
  const r = d as Record<string, unknown>;
  if (typeof r['name'] !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(r['name'])) throw new ToolkitError(`${file}: name: expected 1-64 characters [a-z0-9._-]`);
  if (!Array.isArray(r['profiles']) || !r['profiles'].every((p) => typeof p === 'string' && p.length > 0 && p.length < 64)) throw new ToolkitError(`${file}: profiles: expected an array of profile names (1-63 characters)`);
  if (!METHODS.includes(r['method'] as BackupMethod)) throw new ToolkitError(`${file}: method: ${JSON.stringify(r['method'])} is not one of ${METHODS.join(', ')}`);
  const timeout = r['quiesceTimeoutMs'] ?? 5000;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 600_000) throw new ToolkitError(`${file}: quiesceTimeoutMs: expected whole milliseconds 1..600000`);
  if (r['default'] !== undefined && typeof r['default'] !== 'boolean') throw new ToolkitError(`${file}: default: expected true or false`);
  return { name: r['name'], description: typeof r['description'] === 'string' ? r['description'] : '', profiles: r['profiles'] as string[], method: r['method'] as BackupMethod, quiesceTimeoutMs: timeout, default: r['default'] === true, file };
}

export class ToolkitRegistry {
  private constructor(readonly toolkits: readonly Toolkit[]) {}

  /** Every *.json in `dir`; two toolkits claiming one profile, or two defaults, are refused. */
  static load(dir = DEFAULT_TOOLKITS_DIR): ToolkitRegistry {
    const toolkits = readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => parseToolkit(readFileSync(path.join(dir, f), 'utf8'), path.join(dir, f)));
    const owner = new Map<string, string>();
    for (const t of toolkits) {
      for (const p of t.profiles) {
        const other = owner.get(p);
        if (other) throw new ToolkitError(`${t.file}: profile '${p}' is already handled by toolkit '${other}'`);
        owner.set(p, t.name);
      }
    }
    const defaults = toolkits.filter((t) => t.default);
    if (defaults.length > 1) throw new ToolkitError(`${dir}: toolkits ${defaults.map((t) => t.name).join(' and ')} are both the default`);
    return new ToolkitRegistry(toolkits);
  }

  /** The toolkit for a declared profile (null: none declared); the default one otherwise, or a built-in crash-consistent one. */
  pick(profile: string | null): Toolkit {
    const named = profile === null ? undefined : this.toolkits.find((t) => t.profiles.includes(profile));
    return named ?? this.toolkits.find((t) => t.default) ?? { name: 'crash-consistent', description: 'built in', profiles: [], method: 'crash-consistent', quiesceTimeoutMs: 0, default: true, file: '' };
  }
}
