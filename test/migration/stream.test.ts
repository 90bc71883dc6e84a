import { describe, expect, it } from 'vitest';
import { decodeJson, decodePages, encodeFrame, encodeJson, encodePages, encodePreamble, FrameDecoder, FrameEncoder, FrameType, MigrationStreamError, PREAMBLE_BYTES, FRAME_HEADER_BYTES } from '../../vmm/migration/stream.js';
import { MemoryDigest } from '../../vmm/migration/memory-digest.js';

const page = (fill: number): Uint8Array => new Uint8Array(4096).fill(fill);

function stream(): Uint8Array {
  const enc = new FrameEncoder();
  const parts = [enc.next(FrameType.HELLO, encodeJson({ name: 'vm', vcpus: 1, memBytes: 4 << 20, pcpus: 1 })), enc.next(FrameType.PAGES, encodePages(1, [{ pfn: 3, bytes: page(7) }, { pfn: 9, bytes: null }])), enc.next(FrameType.END, encodeJson({ digest: 'x', nonZeroPages: 1 }))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function decodeAll(bytes: Uint8Array, chunk = bytes.length): ReturnType<FrameDecoder['push']> {
  const d = new FrameDecoder('test');
  const frames = [];
  for (let i = 0; i < bytes.length; i += chunk) frames.push(...d.push(bytes.subarray(i, i + chunk)));
  d.end();
  return frames;
}

function errorOf(f: () => unknown): MigrationStreamError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MigrationStreamError);
    return e as MigrationStreamError;
  }
  throw new Error('expected a MigrationStreamError');
}

describe('migration stream', () => {
  it('round-trips frames, whole or split byte by byte', () => {
    const bytes = stream();
    for (const chunk of [bytes.length, 1, 7, 4096]) {
      const frames = decodeAll(bytes, chunk);
      expect(frames.map((f) => f.type)).toEqual([FrameType.HELLO, FrameType.PAGES, FrameType.END]);
      expect(frames.map((f) => f.seq)).toEqual([0, 1, 2]);
      expect(decodeJson<{ name: string }>(frames[0]!, { name: 'string' }).name).toBe('vm');
      const { round, pages } = decodePages(frames[1]!, 1024);
      expect(round).toBe(1);
      expect(pages[0]!.pfn).toBe(3);
      expect(pages[0]!.bytes).toEqual(page(7));
      expect(pages[1]).toEqual({ pfn: 9, bytes: null });
    }
  });

  it('zero pages cost 5 bytes on the wire, data pages 4101', () => {
    expect(encodePages(0, [{ pfn: 1, bytes: null }]).length).toBe(8 + 5);
    expect(encodePages(0, [{ pfn: 1, bytes: page(1) }]).length).toBe(8 + 5 + 4096);
  });

  it('refuses a corrupt byte anywhere, naming the frame, offset and field', () => {
    const good = stream();
    // A flipped bit in the PAGES payload: that frame's CRC.
    const payloadByte = PREAMBLE_BYTES + (good.length - PREAMBLE_BYTES) / 2;
    const bad = good.slice();
    bad[Math.floor(payloadByte)]! ^= 0x10;
    const e = errorOf(() => decodeAll(bad));
    expect(e.message).toMatch(/frame 1 \(PAGES\) at offset \d+: field 'crc'.*corrupt/);
    // Every single-byte corruption is refused (never a wrong frame, never a crash).
    for (let i = 0; i < good.length; i += 97) {
      const b = good.slice();
      b[i]! ^= 0x01;
      expect(() => decodeAll(b)).toThrow(MigrationStreamError);
    }
  });

  it('refuses a truncated stream at every cut', () => {
    const good = stream();
    for (let cut = 0; cut < good.length; cut += 211) {
      if (cut === 0) continue;
      const e = errorOf(() => decodeAll(good.subarray(0, cut)));
      expect(e.message).toMatch(/truncated/);
    }
    const e = errorOf(() => decodeAll(good.subarray(0, PREAMBLE_BYTES + FRAME_HEADER_BYTES + 3)));
    expect(e.message).toMatch(/frame 0 at offset 16: field 'payload'.*stream ended inside the frame/);
  });

  it('refuses another version and another magic', () => {
    const good = stream();
    const v2 = good.slice();
    v2.set(encodePreamble(2));
    expect(errorOf(() => decodeAll(v2)).message).toMatch(/preamble at offset 8: field 'version': stream version 2; this build speaks version 1/);
    const junk = good.slice();
    junk.set(new TextEncoder().encode('GET / HT'));
    expect(errorOf(() => decodeAll(junk)).message).toMatch(/field 'magic'.*not a Firmament migration stream/);
  });

  it('refuses a lost or repeated frame, an unknown type and an oversized length', () => {
    const lost = new Uint8Array([...encodePreamble(), ...encodeFrame(FrameType.GO, 1)]);
    expect(errorOf(() => decodeAll(lost)).message).toMatch(/field 'seq': expected frame 0/);
    const unknown = new Uint8Array([...encodePreamble(), ...encodeFrame(FrameType.GO, 0)]);
    unknown[PREAMBLE_BYTES] = 0x42;
    expect(errorOf(() => decodeAll(unknown)).message).toMatch(/field 'type': unknown frame type 0x42/);
    const big = new Uint8Array([...encodePreamble(), ...encodeFrame(FrameType.GO, 0)]);
    new DataView(big.buffer).setUint32(PREAMBLE_BYTES + 8, 0xffff_fff0, true);
    expect(errorOf(() => decodeAll(big)).message).toMatch(/field 'length'/);
  });

  it('refuses page records beyond guest RAM, of unknown kind or short', () => {
    const d = new FrameDecoder('t');
    const [f] = d.push(new FrameEncoder().next(FrameType.PAGES, encodePages(2, [{ pfn: 5000, bytes: null }])));
    expect(errorOf(() => decodePages(f!, 1024)).message).toMatch(/field 'pages\[0\]\.pfn': page 0x1388 .*beyond guest RAM of 1024 pages/);
    const p = encodePages(2, [{ pfn: 1, bytes: null }]);
    p[12] = 9;
    const [g] = new FrameDecoder('t').push(new FrameEncoder().next(FrameType.PAGES, p));
    expect(errorOf(() => decodePages(g!, 1024)).message).toMatch(/pages\[0\]\.kind': unknown page kind 9/);
    const short = encodePages(2, [{ pfn: 1, bytes: page(1) }]).subarray(0, 100);
    const [h] = new FrameDecoder('t').push(new FrameEncoder().next(FrameType.PAGES, short));
    expect(errorOf(() => decodePages(h!, 1024)).message).toMatch(/pages\[0\]\.bytes': page 0x1 has 87 of 4096 bytes/);
  });

  it('a digest kept page by page equals one built from the final content only', () => {
    const a = new MemoryDigest();
    const b = new MemoryDigest();
    expect(a.set(1, page(1))).toBe(true);
    expect(a.set(1, page(1))).toBe(false); // unchanged
    a.set(2, page(2));
    a.set(2, page(3));
    a.set(4, page(4));
    a.set(4, null); // back to zero
    expect(a.set(5, page(0))).toBe(false); // zero, never sent
    b.set(2, page(3));
    b.set(1, page(1));
    expect(a.hex()).toBe(b.hex());
    expect(a.nonZeroPages).toBe(2);
    b.set(1, page(9));
    expect(a.hex()).not.toBe(b.hex());
    // The same bytes at another GPA are another memory.
    const c = new MemoryDigest();
    c.set(7, page(1));
    c.set(2, page(3));
    expect(c.hex()).not.toBe(a.hex());
  });
});
