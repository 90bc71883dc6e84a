import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProfileFile, parseProfile, parseProfileText, profileDocument, ProfileError } from '../../hypervisor/security/profile.js';

const dir = mkdtempSync(join(tmpdir(), 'fm-profile-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

/** A hand-written profile: the smallest useful one. */
const HAND = {
  format: 'firmament-behaviour-profile',
  version: 1,
  window: { bucketMs: 100, windowMs: 1000 },
  sets: { ioPorts: ['0x3f8', '0x3fd', 0xf4], msrs: [], codePages: ['0x110000-0x113000', '0x100000'] },
  thresholds: { rates: { 'serial.com1': 500, dirtyPages: 100 } },
};

const errorOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    return (e as Error).message;
  }
  throw new Error('no error');
};

describe('behaviour profile files', () => {
  it('a hand-written profile validates, with defaults filled in, and round-trips through its JSON form', () => {
    const p = loadProfileFile(file('hand.json', JSON.stringify(HAND)));
    expect([...p.sets.ioPorts!].sort((a, b) => a - b)).toEqual([0xf4, 0x3f8, 0x3fd]);
    expect(p.sets.msrs!.size).toBe(0);
    expect([...p.sets.codePages!].sort((a, b) => a - b)).toEqual([0x100000, 0x110000, 0x111000, 0x112000]);
    expect(p.thresholds).toEqual({ 'serial.com1': 500, dirtyPages: 100 });
    expect(p.quietMs).toBe(2000);
    expect(p.sets.hypercalls).toBeUndefined();
    const again = parseProfile(JSON.parse(JSON.stringify(profileDocument(p))));
    expect(again).toEqual(p);
  });

  it('JSON syntax errors name the file, line and column', () => {
    const f = file('broken.json', '{\n  "format": "firmament-behaviour-profile",\n  "version": 1,\n  oops\n}');
    expect(errorOf(() => loadProfileFile(f))).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not JSON \\(.*line 4, column 3\\)`));
  });

  it('a missing file says so', () => {
    expect(errorOf(() => loadProfileFile(join(dir, 'nope.json')))).toBe(`${join(dir, 'nope.json')}: cannot read the profile (ENOENT)`);
  });

  it.each([
    ['wrong format', { ...HAND, format: 'something-else' }, /^p\.json: format: Invalid input: expected "firmament-behaviour-profile"/],
    ['newer version', { ...HAND, version: 2 }, /^p\.json: version: profile version 2 is not supported \(this build reads version 1\)/],
    ['unknown rate metric', { ...HAND, thresholds: { rates: { 'serial.com9': 5 } } }, /^p\.json: thresholds\.rates: Unrecognized key: "serial\.com9" \(rates: exits\.io, .*serial\.com1, serial\.com2, dirtyPages/],
    ['negative threshold', { ...HAND, thresholds: { rates: { dirtyPages: -1 } } }, /^p\.json: thresholds\.rates\.dirtyPages: Too small/],
    ['bad port', { ...HAND, sets: { ioPorts: ['0x3f8', 'COM1'] } }, /^p\.json: sets\.ioPorts\.1: /],
    ['unknown set', { ...HAND, sets: { pciDevices: [] } }, /^p\.json: sets: Unrecognized key: "pciDevices" \(sets: ioPorts, msrs, hypercalls, interruptVectors, codePages\)/],
    ['unaligned code range', { ...HAND, sets: { codePages: ['0x110001-0x112000'] } }, /^p\.json: sets\.codePages\.0: /],
    ['range in a port set', { ...HAND, sets: { ioPorts: ['0x1000-0x3000'] } }, /^p\.json: sets\.ioPorts\.0: /],
    ['unknown field', { ...HAND, threshold: {} }, /^p\.json: \(top level\): Unrecognized key: "threshold"/],
    ['window shorter than a bucket', { ...HAND, window: { bucketMs: 100, windowMs: 50 } }, /^p\.json: window\.windowMs: 50 is shorter than window\.bucketMs 100/],
    ['not an object', [1, 2], /^p\.json: a profile is a JSON object/],
  ])('%s is refused with the field named', (_what, doc, expected) => {
    expect(errorOf(() => parseProfileText(JSON.stringify(doc), 'p.json'))).toMatch(expected);
  });

  it('floors (the drop rule): written by hand, checked, and carried through the JSON form', () => {
    const withFloors = { ...HAND, thresholds: { ...HAND.thresholds, floors: { 'serial.com2': 1, 'exits.interrupt': 5 } } };
    const p = parseProfile(withFloors, 'gw.json');
    expect(p.floors).toEqual({ 'serial.com2': 1, 'exits.interrupt': 5 });
    expect(parseProfile(JSON.parse(JSON.stringify(profileDocument(p))), 'again').floors).toEqual(p.floors);
    // No floors: the key stays out of the document, and nothing may fall below anything.
    expect(parseProfile(HAND, 'hand').floors).toEqual({});
    expect('floors' in (profileDocument(parseProfile(HAND, 'hand')).thresholds as object)).toBe(false);
    expect(errorOf(() => parseProfile({ ...HAND, thresholds: { floors: { 'serial.com2': 0 } } }, 'gw.json'))).toMatch(/^gw\.json: thresholds\.floors\.serial\.com2: Too small/);
    expect(errorOf(() => parseProfile({ ...HAND, thresholds: { floors: { telemetry: 1 } } }, 'gw.json'))).toMatch(/^gw\.json: thresholds\.floors: Unrecognized key: "telemetry" \(rates: exits\.io, /);
  });
});
