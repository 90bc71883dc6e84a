import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { cpuView, disassemble, readMemory, timelineView, eventsView, consolesView, vcpusView, inspectMachine, pageWalkView } from '../../machine/inspect/index.js';
import { chainListener } from '../../machine/debug/listeners.js';
import { firmwareRig, type Rig } from './support.js';

let rig: Rig | null = null;
const open = (opts: Parameters<typeof firmwareRig>[0] = {}): Rig => (rig = firmwareRig(opts));

beforeAll(async () => {
  await buildImages({ quiet: true });
});

afterEach(async () => {
  await rig?.close();
  rig = null;
});

describe('debugger on the real firmware', () => {
  it('starts at the reset vector in real mode and single-steps', () => {
    const { m, d } = open({ paused: true });
    const cpu = m.cpus[0]!;
    expect(cpuView(cpu)).toMatchObject({ mode: 'real', codeBits: 16, linearRip: '0x00000000000ffff0', rip: '0x000000000000fff0' });
    const dis = disassemble(cpu, { count: 2, before: 0 });
    expect(dis.bits).toBe(16);
    expect(dis.lines[0]).toMatchObject({ address: '0x00000000000ffff0', current: true });
    expect(dis.lines[0]!.text).toMatch(/^jmp /);
    const stop = d.step(0);
    expect(stop).toMatchObject({ reason: 'step', cpu: 0 });
    expect(cpuView(cpu).linearRip).toBe('0x00000000000ff000');
    d.step(0);
    // The line before RIP comes from re-synchronising a backward window.
    expect(disassemble(cpu, { count: 1, before: 1 }).lines.map((l) => [l.text, l.current])).toEqual([['cli', false], ['cld', true]]);
    expect(d.state).toBe('paused');
  });

  it('a POST-code breakpoint stops at MEMTEST_PASS in long mode; resume runs on to the next one', async () => {
    const r = open();
    const bp = r.d.addBreakpoint({ kind: 'post', code: 0x33 });
    expect(bp.text).toBe('post 0x33 MEMTEST_PASS');
    const stop = await r.nextStop();
    expect(stop).toMatchObject({ reason: 'post-code', code: '0x33', name: 'MEMTEST_PASS', breakpoint: bp.id });
    expect(r.d.state).toBe('paused');
    expect(r.m.post.lastCode()).toBe(0x33);
    const v = cpuView(r.m.cpus[0]!);
    expect(v.mode).toBe('long');
    expect(v.control.cr0.set).toContain('PG');
    expect(v.control.efer.set).toEqual(expect.arrayContaining(['LME', 'LMA']));
    const t = timelineView(r.m);
    expect(t.last).toMatchObject({ hex: '0x33', name: 'MEMTEST_PASS', severity: 'progress' });
    expect(t.stages.map((s) => s.name)).toEqual(['reset', 'real-mode', 'protected-mode', 'long-mode-init', 'post']);
    expect(r.d.listBreakpoints()[0]!.hits).toBe(1);
    r.d.addBreakpoint({ kind: 'post', code: 0x5f });
    r.d.resume();
    expect(await r.nextStop()).toMatchObject({ reason: 'post-code', code: '0x5F', name: 'HANDOFF' });
    expect(timelineView(r.m).stages.map((s) => s.name).slice(-1)).toEqual(['containers']);
    expect(consolesView(r.m).consoles[0]!.text).toContain('[POST 0x5E] boot-info');
    const exited = r.nextStop(['exit']);
    r.m.stop('test');
    r.m.resume();
    expect(await exited).toMatchObject({ reason: 'exit', exitReason: 'stopped' });
    expect(() => r.d.resume()).toThrow(/has exited/);
    expect(r.d.state).toBe('exited');
  });

  it('a linear breakpoint stops before its instruction and resuming does not re-hit it at once', async () => {
    const r = open({ paused: true });
    r.d.step(0); // now at 0xff000 (cli)
    const bp = r.d.addBreakpoint({ kind: 'linear', address: 0xff001n });
    r.d.addBreakpoint({ kind: 'post', code: 0x01 });
    r.d.resume();
    const hit = await r.nextStop();
    expect(hit).toMatchObject({ reason: 'breakpoint', breakpoint: bp.id, address: '0x00000000000ff001', cpu: 0 });
    expect(cpuView(r.m.cpus[0]!).linearRip).toBe('0x00000000000ff001');
    r.d.resume();
    expect(await r.nextStop()).toMatchObject({ reason: 'post-code', code: '0x01' });
    expect(r.d.listBreakpoints().find((b) => b.id === bp.id)!.hits).toBe(1);
  });

  it('a physical breakpoint hooks the linear aliases found in the page tables and re-checks on hit', async () => {
    const r = open();
    r.d.addBreakpoint({ kind: 'post', code: 0x33 });
    await r.nextStop();
    // The POST logger runs again after 0x33; the firmware identity-maps 0-4 GiB with 2 MiB pages.
    const rip = BigInt(cpuView(r.m.cpus[0]!).linearRip);
    const walk = pageWalkView(r.m.cpus[0]!, rip);
    expect(walk.result.ok && BigInt(walk.result.physical)).toBe(rip);
    const bp = r.d.addBreakpoint({ kind: 'physical', address: rip });
    expect(bp.resolved).toEqual([`cpu0:0x${rip.toString(16)}`]);
    r.d.resume();
    const hit = await r.nextStop();
    expect(hit).toMatchObject({ reason: 'breakpoint', breakpoint: bp.id, address: `0x${rip.toString(16).padStart(16, '0')}` });
    expect(r.m.post.lastCode()).toBeGreaterThanOrEqual(0x33);
  });

  it('runs to each mode switch: real -> protected -> long', async () => {
    const r = open({ paused: true });
    r.d.runToModeSwitch();
    expect(await r.nextStop()).toMatchObject({ reason: 'mode-switch', from: 'real', to: 'protected', cpu: 0 });
    expect(cpuView(r.m.cpus[0]!).mode).toBe('protected');
    r.d.runToModeSwitch();
    expect(await r.nextStop()).toMatchObject({ reason: 'mode-switch', from: 'protected', to: 'long' });
    expect(r.d.status().modeSwitchArmed).toBe(false);
  });

  it('a watch on a physical range reports the bytes written', async () => {
    const r = open();
    const before = readMemory(r.m, { space: 'physical', address: 0x8000, length: 16 }).bytes;
    const w = r.d.addWatch({ address: 0x8000n, length: 16 });
    const stop = await r.nextStop();
    expect(stop).toMatchObject({ reason: 'watch', watch: w.id });
    if (stop.reason !== 'watch') throw new Error('unreachable');
    expect(stop.writes.length).toBeGreaterThan(0);
    const after = readMemory(r.m, { space: 'physical', address: 0x8000, length: 16 }).bytes;
    for (const wr of stop.writes) {
      const i = Number(BigInt(wr.address) - 0x8000n);
      expect(wr.old).toBe(before[i]);
      expect(wr.new).toBe(after[i]);
    }
    r.d.removeWatch(w.id);
    expect(r.d.status().watches).toEqual([]);
  });

  it('memory, events and vCPU views of a paused machine', async () => {
    const r = open();
    r.d.addBreakpoint({ kind: 'post', code: 0x41 });
    await r.nextStop();
    const phys = readMemory(r.m, { space: 'physical', address: 0xffff0, length: 4 });
    expect(phys.bytes.slice(0, 1)).toEqual([0xe9]);
    const virt = readMemory(r.m, { space: 'virtual', address: 0xffff0, length: 4 });
    expect(virt.bytes).toEqual(phys.bytes);
    expect(virt.pages).toEqual([{ linear: '0x00000000000ff000', physical: '0x00000000000ff000' }]);
    const hole = readMemory(r.m, { space: 'virtual', address: '0xffff800000000000', length: 8 });
    expect(hole.bytes).toEqual(new Array(8).fill(null));
    expect(hole.pages![0]!.fault).toMatch(/not present/);
    expect(readMemory(r.m, { space: 'physical', address: 0xa0000, length: 2 }).bytes).toEqual([0xff, 0xff]);
    expect(readMemory(r.m, { space: 'physical', address: 0x2_0000_0000, length: 1 }).bytes).toEqual([null]);
    expect(readMemory(r.m, { space: 'physical', address: 0, length: 32 }).rows).toHaveLength(2);
    const ev = eventsView(r.m);
    expect(ev.events.some((e) => e.kind === 'wake' && e.detail.startsWith('interrupt 0x20'))).toBe(true);
    expect(ev.events.every((e) => e.kind !== 'debugcon')).toBe(true);
    const vc = vcpusView(r.m);
    expect(vc.cpus[0]).toMatchObject({ id: 'cpu0', state: 'running', mode: 'long', kind: 'machine-cpu' });
    expect(vc.cpus[0]!.counters['hlt']).toBeGreaterThan(0);
    const snap = inspectMachine(r.m, { cpu: 3, parts: ['cpu', 'timeline'] });
    expect(snap.errors.cpu).toMatch(/no CPU 3/);
    expect(snap.timeline?.last?.hex).toBe('0x41');
  });
});

describe('listener chaining', () => {
  it('keeps the owner callback and ours, even when the owner assigns its callback later', async () => {
    const r = open({ paused: true });
    const seen: string[] = [];
    const off = chainListener(r.m, 'onPostCode', (c) => seen.push(`ours ${c}`));
    r.m.onPostCode = (c) => seen.push(`owner ${c}`);
    r.m.io.ioWrite(0x80, 1, 0x42);
    expect(seen).toEqual(['owner 66', 'ours 66']);
    off();
    seen.length = 0;
    r.m.io.ioWrite(0x80, 1, 0x43);
    expect(seen).toEqual(['owner 67']);
  });
});
