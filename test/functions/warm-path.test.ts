import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { FunctionPool, type InvocationResult } from '../../vmm/functions/pool.js';
import { FN_BODY_GPA, FN_OUT_GPA } from '../../vmm/functions/abi.js';
import { built, elfOf, type Built } from './helpers.js';

/**
 * The warm path (docs/functions.md, "The warm path"): one VM serves invocation after
 * invocation. It is scrubbed ahead of time, after it answers, so nothing of one invocation
 * reaches the next; and its engine keeps the runtime's translated code between invocations.
 */
let b: Built;
let pool: FunctionPool;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

beforeAll(async () => {
  b = await built();
  // One VM: every invocation below runs on the same one.
  pool = await FunctionPool.start({ shapes: [{ name: 's', memMiB: 8, vcpus: 1, image: b.runtime }], warm: 1, maxVms: 1, idleTimeoutMs: 60_000 });
}, 180_000);

afterAll(async () => {
  await pool?.close();
});

const run = async (fn: string, body: Uint8Array, limitMs = 100): Promise<InvocationResult> => {
  const r = (await pool.invoke('s', { name: fn, elf: elfOf(b, fn), limitMs }, body, performance.now())) as InvocationResult;
  return r;
};

describe('a VM reused from the warm pool', () => {
  it('is clean: a function sees zeros where the previous invocation wrote its .bss, output and stack, and past its own body', async () => {
    const before = await run('leftovers', text('read'));
    expect(Buffer.from(before.response).toString()).toBe('bss=0 out=0 stack=0 body=0');
    const wrote = await run('leftovers', text(`write ${'x'.repeat(5000)}`));
    expect(wrote.status).toBe('ok');
    expect(wrote.vm).toBe(before.vm);
    const after = await run('leftovers', text('read'));
    expect(after.vm).toBe(before.vm);
    expect(Buffer.from(after.response).toString()).toBe('bss=0 out=0 stack=0 body=0');
  });

  it('is clean after a fault and a timeout too, and the check does see bytes that are there', async () => {
    await run('leftovers', text('write'));
    expect((await run('crash', new Uint8Array(0))).status).toBe('fault');
    await run('leftovers', text('write'));
    expect((await run('spin', new Uint8Array(0), 5)).status).toBe('timeout');
    expect(Buffer.from((await run('leftovers', text('read'))).response).toString()).toBe('bss=0 out=0 stack=0 body=0');
    // Control: bytes put into the output buffer and past the body behind the runtime's back are counted.
    const vm = [...pool.shapes.get('s')!.warm][0]!.vm;
    while (!vm.frozen) await new Promise((r) => setTimeout(r, 5)); // done scrubbing, waiting for work
    vm.vmMemory.write(FN_OUT_GPA + 4096, new Uint8Array(100).fill(1));
    vm.vmMemory.write(FN_BODY_GPA + 2000, new Uint8Array(7).fill(1));
    expect(Buffer.from((await run('leftovers', text('read'))).response).toString()).toBe('bss=0 out=100 stack=0 body=7');
  });

  it('runs each function\'s own code (the previous function\'s translation is dropped) without flushing all translated code', async () => {
    const engine = pool.machine.hostCpus[0]!.engine;
    await run('echo', text('warm'));
    const flushes = vi.spyOn(engine, 'flushCode');
    try {
      const body = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
      for (let i = 0; i < 3; i++) {
        const e = await run('echo', text(`echo ${i}`));
        expect(Buffer.from(e.response).toString()).toBe(`echo ${i}`);
        const s = await run('sha256', body);
        expect(Buffer.from(s.response).toString()).toBe(createHash('sha256').update(body).digest('hex'));
        expect(s.vm).toBe(e.vm);
      }
      expect(flushes).not.toHaveBeenCalled();
    } finally {
      flushes.mockRestore();
    }
  });
});
