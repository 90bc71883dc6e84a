/**
 * The snapshot files of `--snapshot-on-exit`: a machine's state plus its shape,
 * and the errors for files that are not one. Saving that the machine refuses
 * is an outcome to record, never a failed run.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMachineSnapshot, snapshotSkipStatus, writeMachineSnapshot } from '../../tools/cli/snapshot-file.js';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import { StateError, type StateRecord } from '../../machine/state.js';
import type { PcMachine } from '../../machine/platform/pc.js';

const dir = mkdtempSync(join(tmpdir(), 'fm-snapfile-'));
/** Only saveState is used by the writer: a stand-in keeps this test free of engines. */
const machineSaving = (save: () => StateRecord): PcMachine => ({ saveState: save }) as unknown as PcMachine;

describe('machine snapshot files', () => {
  it('round-trip the state and the shape of the machine', () => {
    const file = join(dir, 'ok.fmsnap');
    const state: StateRecord = { version: 1, ram: new Uint8Array([1, 2, 3]), serial: 'hi' };
    const shape = { command: 'run' as const, pcpus: 2, guests: [{ path: '/img/g.elf', memBytes: 64 << 20, vcpus: 2, cmdline: 'a=1' }] };
    const out = writeMachineSnapshot(file, machineSaving(() => state), shape);
    expect(out).toEqual({ file, bytes: readFileSync(file).length });
    const back = readMachineSnapshot(file);
    expect(back.shape).toEqual(shape);
    expect(back.machine).toEqual(state);
    const boot = { command: 'boot' as const, memBytes: 64 << 20, cpus: 1, faults: ['uart-dead'], seed: -3, guests: [], handedOff: true };
    writeMachineSnapshot(file, machineSaving(() => state), boot);
    expect(readMachineSnapshot(file).shape).toEqual(boot);
  });

  it('a machine that refuses to save gives an outcome with the reason, and no file', () => {
    const file = join(dir, 'refused.fmsnap');
    const out = writeMachineSnapshot(
      file,
      machineSaving(() => {
        throw new StateError('hypervisor', 'vms', 'cannot save a running VM yet');
      }),
      { command: 'run', pcpus: 1, guests: [] },
    );
    expect(out).toEqual({ file, error: "saving the machine state failed: hypervisor: state field 'vms': cannot save a running VM yet" });
    expect(() => readFileSync(file)).toThrow(/ENOENT/);
  });

  it('refuses files that are not machine snapshots, naming the file and the field', () => {
    const notSnap = join(dir, 'report.json');
    writeFileSync(notSnap, '{"exit": {}}\n');
    expect(() => readMachineSnapshot(notSnap)).toThrow(/snapshot: offset 0: magic: expected FMSNAP02/);
    const bare = join(dir, 'bare.fmsnap');
    writeFileSync(bare, encodeSnapshot({ version: 1, ram: new Uint8Array(4) }));
    expect(() => readMachineSnapshot(bare)).toThrow(new StateError(bare, 'format', "expected 'firmament-machine-snapshot' (a file written by --snapshot-on-exit), got null"));
    const badShape = join(dir, 'shape.fmsnap');
    writeFileSync(badShape, encodeSnapshot({ format: 'firmament-machine-snapshot', version: 1, shape: { command: 'boot', memBytes: 'lots', faults: [], guests: [] }, machine: {} }));
    expect(() => readMachineSnapshot(badShape)).toThrow(new StateError(badShape, 'shape.memBytes', 'expected a whole number, got "lots"'));
    expect(() => readMachineSnapshot(join(dir, 'missing.fmsnap'))).toThrow(/missing\.fmsnap: state field 'file': ENOENT/);
  });

  it('--snapshot-unless-status takes an exit status', () => {
    expect(snapshotSkipStatus(undefined)).toBeUndefined();
    expect(snapshotSkipStatus('124')).toBe(124);
    expect(() => snapshotSkipStatus('-1')).toThrow(/--snapshot-unless-status -1: expected an exit status from 0 to 255/);
    expect(() => snapshotSkipStatus('x')).toThrow(/expected an exit status/);
  });
});
