import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine, restoreGuestMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import type { VmImage } from '../../hypervisor/hypervisor.js';
import { AGENT_REQUEST, BackupAgents, backupVm, DEFAULT_TOOLKITS_DIR, parseToolkit, ToolkitError, ToolkitRegistry, writeAgentRequest } from '../../vmm/backup/index.js';

/**
 * The backup service with the kvstore guest: a quiesced backup restores to a
 * state the guest itself finds consistent; snapshots taken at random moments
 * without quiescing land mid-update; toolkits are data; a guest that does not
 * acknowledge in time gets no snapshot.
 */
const MiB = 1024 * 1024;
const AGENT_GPA = 0x300000;
const REPO = path.resolve(__dirname, '../..');
let kvstore: string;
let store: SnapshotStore;
let g: GuestMachine;
let agents: BackupAgents;
let running: Promise<unknown>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Restores an image, asks its agent to verify, runs it to its exit: the guest's own verdict. */
async function verifyRestored(image: VmImage): Promise<{ ok: boolean; serial: string }> {
  const r = restoreGuestMachine(image, { pcpus: 1 });
  try {
    const vm = r.vms[0]!;
    const before = vm.serial.length;
    writeAgentRequest(vm, AGENT_GPA, AGENT_REQUEST.VERIFY);
    await r.machine.run({ timeoutMs: 60_000 });
    const serial = vm.serial.slice(before);
    return { ok: vm.exit?.reason === 'debug-exit' && vm.exit.code === 1, serial };
  } finally {
    r.hypervisor.close();
    r.machine.close();
  }
}

beforeAll(async () => {
  kvstore = (await buildImages({ quiet: true })).guests['kvstore']!;
  store = SnapshotStore.open(mkdtempSync(path.join(os.tmpdir(), 'fm-backup-')));
  // delay=100000: the store must still be updating when the last test runs, on a fast machine too
  // (the default 2000 finished all 40000 updates before the fallback test on CI).
  g = createGuestMachine([{ path: kvstore, memBytes: 16 * MiB, vcpus: 1, cmdline: 'delay=100000' }], { pcpus: 1 });
  agents = new BackupAgents(g.hypervisor);
  agents.attachAll();
  running = g.machine.run({ timeoutMs: 300_000 });
  while (agents.agents.size === 0) await sleep(5);
}, 120_000);

afterAll(async () => {
  g?.machine.stop();
  await running;
  g?.hypervisor.close();
  g?.machine.close();
});

describe('backup', () => {
  it('the guest declared its profile; the kvstore toolkit quiesces it, and the backup restores consistent (checked by the guest)', async () => {
    const vm = g.vms[0]!;
    expect(agents.agents.get(vm)?.profile).toBe('kvstore');
    await sleep(50);
    const r = await backupVm(g.hypervisor, agents, ToolkitRegistry.load(), vm, store, 'kv-quiesced');
    expect(r).toMatchObject({ toolkit: 'kvstore-journal', profile: 'kvstore', consistency: 'application' });
    expect(r.quiesceMs).toBeGreaterThan(0);
    expect(vm.frozen).toBe(false); // thawed
    const snap = await store.load('kv-quiesced');
    expect(snap.meta).toMatchObject({ toolkit: 'kvstore-journal', consistency: 'application' });
    const v = await verifyRestored({ state: snap.state, memory: snap.memory });
    expect(v.serial).toMatch(/kvstore: verify: journal and index agree \(\d+ records\)/);
    expect(v.ok).toBe(true);
  });

  it('snapshots at random moments without quiescing can land mid-update (the guest finds them inconsistent)', async () => {
    const vm = g.vms[0]!;
    const verdicts: boolean[] = [];
    for (let i = 0; i < 6 && !verdicts.includes(false); i++) {
      await sleep(7 + 5 * i);
      g.machine.pauseAfterRound();
      while (!g.machine.paused) await sleep(1);
      const image = g.hypervisor.snapshotVm(vm);
      g.machine.resume();
      const v = await verifyRestored(image);
      if (!v.ok) expect(v.serial).toMatch(/INCONSISTENT: journal has (\d+) records, index applied (\d+)/);
      verdicts.push(v.ok);
    }
    expect(verdicts).toContain(false);
  });

  it('a guest that does not acknowledge in time gets no snapshot', async () => {
    const vm = g.vms[0]!;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-toolkits-'));
    writeFileSync(path.join(dir, 'slow.json'), JSON.stringify({ name: 'kv-fast', profiles: ['kvstore'], method: 'agent-quiesce', quiesceTimeoutMs: 50 }));
    vm.frozen = true; // the guest cannot run, so it cannot answer
    try {
      await expect(backupVm(g.hypervisor, agents, ToolkitRegistry.load(dir), vm, store, 'kv-late')).rejects.toThrow(/did not acknowledge quiesce within 50 ms; no snapshot was taken/);
    } finally {
      vm.frozen = false;
      g.machine.kick();
    }
    expect(await store.names()).not.toContain('kv-late');
  });

  it('a profile no toolkit names falls back to the default crash-consistent toolkit', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-toolkits-'));
    copyFileSync(path.join(DEFAULT_TOOLKITS_DIR, 'crash-consistent.json'), path.join(dir, 'crash-consistent.json'));
    const r = await backupVm(g.hypervisor, agents, ToolkitRegistry.load(dir), g.vms[0]!, store, 'kv-crash');
    expect(r).toMatchObject({ toolkit: 'crash-consistent', consistency: 'crash', quiesceMs: 0 });
  });

  it('toolkit files are checked, naming the file and field', () => {
    expect(() => parseToolkit('{"name":"x","profiles":[],"method":"fsfreeze"}', 'x.json')).toThrow(/x.json: method: "fsfreeze" is not one of agent-quiesce, crash-consistent/);
    expect(() => parseToolkit('{"name":"x","profiles":"kv","method":"crash-consistent"}', 'x.json')).toThrow(ToolkitError);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-toolkits-'));
    writeFileSync(path.join(dir, 'a.json'), JSON.stringify({ name: 'a', profiles: ['kvstore'], method: 'agent-quiesce' }));
    writeFileSync(path.join(dir, 'b.json'), JSON.stringify({ name: 'b', profiles: ['kvstore'], method: 'crash-consistent' }));
    expect(() => ToolkitRegistry.load(dir)).toThrow(/b.json: profile 'kvstore' is already handled by toolkit 'a'/);
  });

  it('firmament backup --monitor drives the same through a running firmament run', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-backup-cli-'));
    const sock = path.join(dir, 'm.sock');
    const run = spawn(process.execPath, [path.join(REPO, 'tools/firmament.mjs'), 'run', kvstore, '--mem', '16M', '--cmdline', 'delay=100000', '--monitor', sock, '--store', path.join(dir, 'store')], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      run.stdout!.resume();
      while (!existsSync(sock)) await sleep(20);
      await sleep(100);
      const cli = spawn(process.execPath, [path.join(REPO, 'tools/firmament.mjs'), 'backup', '--monitor', sock, '--to', 'kv-cli', '--json'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      cli.stdout!.on('data', (d: Buffer) => (text += d.toString()));
      cli.stderr!.on('data', (d: Buffer) => (text += d.toString()));
      const code = await new Promise<number | null>((r) => cli.once('exit', r));
      expect(code, text).toBe(0);
      expect(JSON.parse(text)).toMatchObject({ ref: 'kv-cli', toolkit: 'kvstore-journal', consistency: 'application', profile: 'kvstore' });
    } finally {
      run.kill('SIGTERM');
    }
  });
});
