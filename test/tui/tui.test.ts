/**
 * Drives the real TUI in a real terminal: tmux runs `firmament tui` on our
 * firmware, send-keys types, capture-pane reads the screen. Every wait is
 * bounded; every tmux session (on a private tmux server) is killed afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildImages } from '../../tools/build-images.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
/** A private tmux server: nothing here touches the user's sessions. */
const SERVER = `fm-tui-test-${process.pid}`;
const PANE_TITLES = ['1 Boot timeline', '2 Console', '3 CPU', '4 Disassembly', '5 Memory', '6 Page walk', '7 VMs / vCPUs', '8 Events'];

const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', SERVER, ...args], { encoding: 'utf8' });

let counter = 0;
function startTui(cols: number, rows: number, args: string): string {
  const name = `tui${++counter}`;
  // The shell line prints the exit status, then keeps the pane open so it can be read.
  const cmd = `cd ${ROOT} && LANG=C.UTF-8 node tools/firmament.mjs tui ${args}; echo TUI-EXIT $?; sleep 60`;
  tmux('new-session', '-d', '-s', name, '-x', String(cols), '-y', String(rows), cmd);
  return name;
}

const screen = (name: string): string => tmux('capture-pane', '-p', '-t', name);
const keys = (name: string, ...k: string[]): void => void tmux('send-keys', '-t', name, ...k);
/** Literal text (tmux would read "0x33" as a key code otherwise). */
const type = (name: string, text: string): void => void tmux('send-keys', '-t', name, '-l', text);

async function waitFor(name: string, what: (s: string) => boolean, label: string, timeoutMs = 30_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    last = screen(name);
    if (what(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${label}; screen was:\n${last}`);
}

const statusLine = (s: string): string => s.trimEnd().split('\n').pop() ?? '';

/** Each case starts a process that builds nothing but still boots firmware: give loaded CI machines room. */
const CASE_TIMEOUT = 120_000;

describe.skipIf(!hasTmux)('TUI in a real terminal (tmux)', () => {
  const children: ChildProcess[] = [];
  let dir = '';

  beforeAll(async () => {
    await buildImages({ quiet: true });
    dir = mkdtempSync(join(tmpdir(), 'fm-tui-'));
  });

  afterAll(() => {
    spawnSync('tmux', ['-L', SERVER, 'kill-server']);
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('120x40: every pane renders; step, breakpoint on a POST code, help and quit work', async () => {
    const t = startTui(120, 40, '--clock virtual --paused');
    let s = await waitFor(t, (x) => x.includes('PAUSED') && x.includes('real mode'), 'the paused machine at reset');
    for (const title of PANE_TITLES) expect(s).toContain(title);
    expect(s).toMatch(/▶000ffff0 e90df0\s+jmp/);
    expect(s).toContain('RIP 000000000000fff0');
    expect(s).toContain('CR0 60000010');

    keys(t, 's');
    s = await waitFor(t, (x) => x.includes('stepped CPU 0 to 0xff000'), 'a single step');
    expect(s).toMatch(/▶000ff000 fa\s+cli/);
    expect(statusLine(s)).toContain('cpu0 real 000ff000');

    keys(t, 'b');
    await waitFor(t, (x) => statusLine(x).includes('break ('), 'the breakpoint prompt');
    type(t, 'post 0x33');
    keys(t, 'Enter');
    await waitFor(t, (x) => x.includes('breakpoint 1: post 0x33 MEMTEST_PASS'), 'the breakpoint to be set');
    keys(t, 'c');
    s = await waitFor(t, (x) => statusLine(x).includes('POST 0x33 MEMTEST_PASS') && statusLine(x).includes('PAUSED'), 'the POST 0x33 breakpoint');
    expect(statusLine(s)).toContain('breakpoint 1: POST 0x33');
    expect(s).toContain('long mode, 64-bit code');
    expect(s).toMatch(/0x33 MEMTEST_PASS/);
    expect(s).toContain('[POST 0x32] memory test');

    keys(t, 't');
    type(t, '0x1ff000');
    keys(t, 'Enter');
    s = await waitFor(t, (x) => x.includes('-> PA 001ff000'), 'the page walk');
    expect(s).toMatch(/PD\[000\]\s+@00003000 00000000000000e3 P RW us A D PS nx/);

    keys(t, '?');
    s = await waitFor(t, (x) => x.includes('Run control') && x.includes('Breakpoints & watches'), 'the help overlay');
    keys(t, 'x');
    await waitFor(t, (x) => !x.includes('Breakpoints & watches'), 'the help to close');

    keys(t, 'q');
    await waitFor(t, (x) => x.includes('TUI-EXIT 0'), 'the TUI to quit');
  }, CASE_TIMEOUT);

  it('80x24: every pane is on screen; zoom shows the whole CPU pane', async () => {
    const t = startTui(80, 24, '--clock virtual --paused');
    const s = await waitFor(t, (x) => x.includes('PAUSED') && x.includes('real mode'), 'the compact layout');
    for (const title of PANE_TITLES) expect(s).toContain(title);
    expect(s.split('\n').every((l) => [...l].length <= 80)).toBe(true);
    keys(t, 'z');
    const z = await waitFor(t, (x) => x.includes('CR3') && !x.includes('4 Disassembly'), 'the zoomed CPU pane');
    expect(z).toContain('GS  0000');
    keys(t, 'end');
    await waitFor(t, (x) => x.includes('EFER'), 'the CPU pane scrolled to its end');
    keys(t, 'q');
    await waitFor(t, (x) => x.includes('TUI-EXIT 0'), 'the TUI to quit');
  }, CASE_TIMEOUT);

  it('attaches to `boot --monitor` and drives it over the socket', async () => {
    const sock = join(dir, 'boot.sock');
    const boot = spawn(process.execPath, ['tools/firmament.mjs', 'boot', '--clock', 'virtual', '--monitor', sock, '--paused'], { cwd: ROOT, stdio: 'ignore' });
    children.push(boot);
    // The monitor socket appears once the boot process has built its machine.
    for (const until = Date.now() + 30_000; !existsSync(sock) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 100));
    const name = startTui(120, 40, `--attach ${sock}`);
    const s = await waitFor(name, (x) => x.includes('PAUSED'), 'the attached TUI');
    expect(statusLine(s)).toContain('cpu0 real 000ffff0');
    keys(name, 'b');
    type(name, 'post MEMTEST_PASS');
    keys(name, 'Enter');
    await waitFor(name, (x) => x.includes('breakpoint 1: post 0x33'), 'the remote breakpoint');
    keys(name, 'c');
    await waitFor(name, (x) => statusLine(x).includes('POST 0x33 MEMTEST_PASS') && statusLine(x).includes('PAUSED'), 'the remote stop');
    keys(name, 'c');
    // The boot finishes; its monitor goes away with it and the TUI says so.
    await waitFor(name, (x) => statusLine(x).includes('DISCONNECTED'), 'the remote exit');
    keys(name, 'q');
    await waitFor(name, (x) => x.includes('TUI-EXIT 0'), 'the TUI to detach');
    await new Promise<void>((r) => (boot.exitCode !== null ? r() : boot.once('exit', () => r())));
    expect(boot.exitCode).toBe(0);
  }, CASE_TIMEOUT);
});
