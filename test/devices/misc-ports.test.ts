import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { PostPort } from '../../machine/devices/post-port.js';
import { DebugExit } from '../../machine/devices/debug-exit.js';
import { Debugcon } from '../../machine/devices/debugcon.js';
import { IoBus } from '../../machine/devices/io-bus.js';
import { StateError } from '../../machine/state.js';
import { cloneState } from './helpers.js';

describe('PostPort', () => {
  it('records every code with its virtual time, in order, and reads back the last one', () => {
    const tl = new Timeline();
    const seen: [number, number][] = [];
    const post = new PostPort({ clock: tl, onCode: (c, t) => seen.push([c, t]) });
    expect(post.ioRead(0x80, 1)).toBe(0);
    post.ioWrite(0x80, 1, 0x10);
    tl.advanceTo(500);
    post.ioWrite(0x80, 1, 0x2a);
    post.ioWrite(0x80, 1, 0x2a);
    expect(post.codes()).toEqual([
      { code: 0x10, atNs: 0 },
      { code: 0x2a, atNs: 500 },
      { code: 0x2a, atNs: 500 },
    ]);
    expect(seen).toEqual([
      [0x10, 0],
      [0x2a, 500],
      [0x2a, 500],
    ]);
    expect(post.ioRead(0x80, 1)).toBe(0x2a);
    expect(post.ioRead(0x80, 2)).toBe(0xff2a);
  });

  it('keeps the log bounded, counting what it dropped', () => {
    const post = new PostPort({ clock: new Timeline(), maxRecords: 3 });
    for (let i = 1; i <= 5; i++) post.ioWrite(0x80, 1, i);
    expect(post.codes().map((c) => c.code)).toEqual([3, 4, 5]);
    expect(post.dropped()).toBe(2);
  });

  it('snapshot round-trip and field validation', () => {
    const tl = new Timeline();
    const a = new PostPort({ clock: tl });
    a.ioWrite(0x80, 1, 0x55);
    tl.advanceTo(7);
    a.ioWrite(0x80, 1, 0xaa);
    const b = new PostPort({ clock: tl });
    b.restoreState(cloneState(a.saveState()));
    expect(b.codes()).toEqual(a.codes());
    expect(b.ioRead(0x80, 1)).toBe(0xaa);
    const s = a.saveState();
    expect(() => b.restoreState({ ...s, codes: [1, 300] })).toThrow(StateError);
    expect(() => b.restoreState({ ...s, codes: [1, 300], times: [0, 0] })).toThrow(/'codes\[1\]'/);
    expect(() => b.restoreState({ ...s, times: [1] })).toThrow(/'times'/);
  });
});

describe('DebugExit', () => {
  it('a write of v requests exit with status (v << 1) | 1 at iobase 0xF4, size 4', () => {
    const exits: [number, number][] = [];
    const dev = new DebugExit({ onExit: (s, v) => exits.push([s, v]) });
    expect(dev.ports).toEqual([{ base: 0xf4, length: 4 }]);
    const bus = new IoBus();
    bus.register(dev);
    bus.ioWrite(0xf4, 1, 0x10);
    bus.ioWrite(0xf4, 4, 0x31);
    expect(exits).toEqual([
      [0x21, 0x10],
      [0x63, 0x31],
    ]);
    expect(dev.exitRequest()).toEqual({ status: 0x21, value: 0x10 });
    expect(bus.ioRead(0xf4, 1)).toBe(0xff);
    expect(bus.ioRead(0xf4, 4)).toBe(0xffffffff);
  });
});

describe('Debugcon', () => {
  it('appends written bytes and reads back 0xE9 for the presence check', () => {
    const out: number[] = [];
    const con = new Debugcon({ onByte: (b) => out.push(b) });
    expect(con.ioRead(0xe9, 1)).toBe(0xe9);
    for (const ch of 'boot ok\n') con.ioWrite(0xe9, 1, ch.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe('boot ok\n');
    expect(con.text()).toBe('boot ok\n');
    // Only byte accesses are valid, as in QEMU.
    con.ioWrite(0xe9, 2, 0x4142);
    expect(con.text()).toBe('boot ok\n');
  });

  it('keeps the last keepBytes of output', () => {
    const con = new Debugcon({ keepBytes: 4 });
    for (let i = 0; i < 10_000; i++) con.ioWrite(0xe9, 1, 0x30 + (i % 10));
    expect(con.text()).toBe('6789');
  });
});
