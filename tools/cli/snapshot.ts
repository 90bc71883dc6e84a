/** `firmament snapshot ...`: the VM snapshot store (docs/snapshots.md). */
import { parseArgs } from 'node:util';
import { defaultStoreDir, SnapshotStore, type SnapshotListEntry, type VerifyReport } from '../../vmm/snapshot/index.js';
import { toJson, UsageError } from './args.js';
import { MonitorClient } from '../../tui/monitor-client.js';

export const SNAPSHOT_HELP = `firmament snapshot <save|restore|list|inspect|verify|diff|push|pull|delete|gc> [options]
  VM snapshots (state record + guest memory in 64 KiB content-addressed chunks) kept as
  OCI artifacts in a local OCI image layout; chunks shared by snapshots are stored once.

  save NAME --monitor SOCK      snapshot a VM of a running 'run' or 'boot --guest' (its --monitor
       [--vm VM] [--force]      socket) into that process's store; the VM keeps running
  restore NAME --monitor SOCK   put a running VM back at snapshot NAME, in place
       [--vm VM]                (a new process: firmament run --restore NAME)
  clone [REF] --monitor SOCK    start N linked clones in that machine: of snapshot REF from the
       --count N [--vm VM]      store, or of a running VM as it is now (copy-on-write; they
       [--name PREFIX]          are named PREFIX-0..N-1; the run needs --clone-room for the image)

  list                          name, memory size, stored bytes, creation time
  inspect REF                   layout, chunk counts (zero, stored, shared), state fields, digests
  verify [REF...]               re-hash every blob and check every CRC (all snapshots when no REF);
                                exit 1 when a problem is found
  diff A B                      which GPA chunks and state fields differ; exit 1 when they differ
  push REF URL                  upload to http://HOST:PORT/REPO[:TAG] (tag default: REF); blobs the
                                registry has are skipped
  pull URL [REF]                download http://HOST:PORT/REPO:TAG as REF (default: TAG), fetching
                                only the blobs the store lacks; --force replaces an existing REF
  delete REF                    forget a snapshot (its blobs stay until gc)
  gc                            delete blobs no snapshot uses

  --store DIR                   the store (default $FIRMAMENT_SNAPSHOTS, else
                                ~/.local/share/firmament/snapshots)
  --timeout S                   deadline of each registry request (default 30)
  --json                        one JSON document on stdout`;

export async function snapshotCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { store: { type: 'string' }, json: { type: 'boolean' }, force: { type: 'boolean' }, timeout: { type: 'string' }, monitor: { type: 'string' }, vm: { type: 'string' }, count: { type: 'string' }, name: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined) {
    console.log(SNAPSHOT_HELP);
    return values.help ? 0 : 2;
  }
  const store = SnapshotStore.open(values.store ?? defaultStoreDir());
  const json = values.json === true;
  const out = (doc: unknown, text: () => string) => console.log(json ? toJson(doc) : text());
  const want = (n: number, usage: string) => {
    if (args.length !== n) throw new UsageError(`snapshot ${sub}: expected ${usage}`);
  };
  const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout) * 1000;
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new UsageError(`--timeout ${values.timeout}: expected seconds > 0`);
  const net = timeoutMs === undefined ? {} : { timeoutMs };

  switch (sub) {
    case 'save':
    case 'restore': {
      want(1, `${sub} NAME --monitor SOCK`);
      if (values.monitor === undefined) throw new UsageError(`snapshot ${sub}: needs --monitor SOCK, the socket of a running 'firmament run' or 'boot' (or start a new one with: firmament run --restore NAME)`);
      const client = await MonitorClient.connect(values.monitor).catch((e: Error) => {
        throw new UsageError(`snapshot ${sub}: no monitor answers at ${values.monitor} (${e.message.replace(/^--attach [^:]*: /, '')})`);
      });
      try {
        const common = { name: args[0]!, ...(values.vm !== undefined ? { vm: values.vm } : {}) };
        if (sub === 'save') {
          const r = await client.request('snapshot-save', { ...common, ...(values.force ? { force: true } : {}) });
          out(r, () => `${r.vm} -> ${r.ref} (${r.digest.slice(0, 19)}…): ${size(r.memoryBytes)} memory, ${size(r.bytesWritten)} new in the store, VM time ${(r.clockNs / 1e6).toFixed(3)} ms`);
        } else {
          const r = await client.request('snapshot-load', common);
          out(r, () => `${r.vm} is back at ${r.ref} (VM time ${(r.clockNs / 1e6).toFixed(3)} ms): ${size(r.bytesMoved)} of guest memory moved (${r.method}), a full restore moves ${size(r.fullBytes)}`);
        }
      } finally {
        client.close();
      }
      return 0;
    }
    case 'clone': {
      if (args.length > 1) throw new UsageError('snapshot clone: expected [REF] --monitor SOCK --count N');
      if (values.monitor === undefined) throw new UsageError(`snapshot clone: needs --monitor SOCK, the socket of a running 'firmament run' (or start clones in a new one with: firmament run --clone REF --count N)`);
      if (args.length === 1 && values.vm !== undefined) throw new UsageError('snapshot clone: give REF (a stored snapshot) or --vm (a running VM), not both');
      const count = values.count === undefined ? 1 : Number(values.count);
      if (!Number.isInteger(count) || count < 1 || count > 64) throw new UsageError(`--count ${values.count}: expected a whole number from 1 to 64`);
      const client = await MonitorClient.connect(values.monitor).catch((e: Error) => {
        throw new UsageError(`snapshot clone: no monitor answers at ${values.monitor} (${e.message.replace(/^--attach [^:]*: /, '')})`);
      });
      try {
        const r = await client.request('clone', { count, ...(args[0] !== undefined ? { from: args[0] } : {}), ...(values.vm !== undefined ? { vm: values.vm } : {}), ...(values.name !== undefined ? { name: values.name } : {}) });
        out(r, () => `${r.clones.length} linked clone(s) of ${r.source} (${size(r.imageBytes)} image, shared copy-on-write): ${r.clones.map((c) => c.name).join(', ')}; ${size(r.hostFramesFree * 4096)} host RAM left`);
      } finally {
        client.close();
      }
      return 0;
    }
    case 'list': {
      want(0, 'no arguments');
      const rows = await store.list();
      const line = (r: SnapshotListEntry) =>
        r.ok ? `${r.ref.padEnd(24)} ${size(r.memoryBytes).padStart(9)} memory  ${size(r.storedBytes).padStart(9)} stored  ${r.created}  ${r.digest.slice(0, 19)}…` : `${r.ref.padEnd(24)} UNREADABLE: ${r.error}`;
      out(rows, () => (rows.length === 0 ? `${store.dir}: no snapshots` : rows.map(line).join('\n')));
      return 0;
    }
    case 'inspect': {
      want(1, 'inspect REF');
      const d = await store.inspect(args[0]!);
      out(d, () =>
        [
          `snapshot   ${d.ref}`,
          `digest     ${d.digest}`,
          `created    ${d.created}`,
          `memory     ${size(d.memoryBytes)} in ${d.ranges.map((r) => `[${hex(r.gpa)}, ${hex(r.gpa + r.length)})`).join(' ')}`,
          `chunks     ${d.chunks} of ${size(d.chunkSize)}: ${d.zeroChunks} zero (not stored), ${d.storedChunks} distinct stored, ${d.sharedChunks} shared with other snapshots`,
          `stored     ${size(d.storedBytes)}`,
          `state      ${size(d.state.size)}, format v${d.state.formatVersion}, fields: ${d.state.fields.join(', ')}`,
          ...Object.entries(d.meta).map(([k, v]) => `meta       ${k}=${v}`),
        ].join('\n'),
      );
      return 0;
    }
    case 'verify': {
      // By name, not through list(): list() stops at the first broken snapshot, verify reports every one.
      const names = args.length > 0 ? args : await store.names();
      const reports: VerifyReport[] = [];
      for (const r of names) reports.push(await store.verify(r));
      const ok = reports.every((r) => r.ok);
      out({ ok, snapshots: reports }, () =>
        reports.length === 0 ? `${store.dir}: no snapshots` : reports.map((r) => (r.ok ? `${r.ref}: OK (${r.blobsChecked} blobs, ${size(r.bytesChecked)})` : r.problems.map((p) => `${r.ref}: ${p}`).join('\n'))).join('\n'),
      );
      return ok ? 0 : 1;
    }
    case 'diff': {
      want(2, 'diff A B');
      const d = await store.diff(args[0]!, args[1]!);
      out(d, () =>
        [
          `memory: ${d.changed.length} of ${d.chunks} chunks differ, ${size(d.changedBytes)} (${size(d.sameBytes)} the same)`,
          ...d.changedRanges.map((r) => `  [${hex(r.gpa)}, ${hex(r.gpa + r.length)})  ${size(r.length)}`),
          d.state.same ? 'state: identical' : `state: ${d.state.paths.length} field(s) differ`,
          ...d.state.paths.map((p) => `  ${p}`),
        ].join('\n'),
      );
      return d.changed.length === 0 && d.state.same ? 0 : 1;
    }
    case 'push': {
      want(2, 'push REF http://HOST:PORT/REPO[:TAG]');
      const r = await store.push(args[0]!, args[1]!, net);
      out(r, () => `pushed ${r.ref} to ${r.remote}: ${r.transferredBlobs} blob(s) uploaded, ${r.skippedBlobs} already there; ${size(r.bytesTransferred)} sent of ${size(r.bytesTotal)}`);
      return 0;
    }
    case 'pull': {
      if (args.length < 1 || args.length > 2) throw new UsageError('snapshot pull: expected pull http://HOST:PORT/REPO:TAG [REF]');
      const r = await store.pull(args[0]!, args[1], { ...net, force: values.force === true });
      out(r, () => `pulled ${r.remote} as ${r.ref}: ${r.transferredBlobs} blob(s) downloaded, ${r.skippedBlobs} already in the store; ${size(r.bytesTransferred)} received of ${size(r.bytesTotal)}`);
      return 0;
    }
    case 'delete': {
      want(1, 'delete REF');
      const r = await store.delete(args[0]!);
      out(r, () => `deleted ${r.ref} (${r.digest}); run 'firmament snapshot gc' to free blobs no other snapshot uses`);
      return 0;
    }
    case 'gc': {
      want(0, 'no arguments');
      const r = await store.gc();
      out(r, () => `removed ${r.removedBlobs} blob(s), ${size(r.freedBytes)} freed`);
      return 0;
    }
    default:
      throw new UsageError(`snapshot: unknown subcommand '${sub}' (list, inspect, verify, diff, push, pull, delete or gc)`);
  }
}

const hex = (n: number) => `0x${n.toString(16)}`;

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n % 1024 ? 1 : 0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(n % 1024 ** 2 ? 1 : 0)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
