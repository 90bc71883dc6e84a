/**
 * What the TUI drives: a machine in this process (through a DebugSession)
 * or one elsewhere (through the monitor socket). Both speak the monitor
 * protocol's commands, so the TUI has one code path.
 */
import type { CommandName, Commands, MonitorEvent } from '../machine/debug/protocol.js';
import type { DebugSession } from '../machine/debug/session.js';
import type { MonitorClient } from './monitor-client.js';

export interface TuiTarget {
  readonly kind: 'local' | 'remote';
  /** Shown in the status bar: what runs, and where. */
  readonly label: string;
  call<K extends CommandName>(cmd: K, args: Commands[K]['args']): Promise<Commands[K]['result']>;
  onEvent(listener: (ev: MonitorEvent) => void): () => void;
  onClose(listener: (why: string) => void): void;
  close(): void;
}

export function localTarget(session: DebugSession, label: string): TuiTarget {
  const closers = new Set<(why: string) => void>();
  return {
    kind: 'local',
    label,
    call: (cmd, args) => {
      try {
        return Promise.resolve(session.call(cmd, args));
      } catch (e) {
        return Promise.reject(e as Error);
      }
    },
    onEvent: (l) => session.onEvent(l),
    onClose: (l) => void closers.add(l),
    close: () => {
      for (const l of closers) l('closed');
    },
  };
}

export function remoteTarget(client: MonitorClient, label: string): TuiTarget {
  return {
    kind: 'remote',
    label,
    call: (cmd, args) => client.request(cmd, args),
    onEvent: (l) => client.onEvent(l),
    onClose: (l) => client.onClose(l),
    close: () => client.close(),
  };
}
