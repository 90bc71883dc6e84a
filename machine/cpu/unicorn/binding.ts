/**
 * Typed koffi binding to libunicorn >= 2.1 and to our native helper.
 * Nothing untyped leaves this module: callers get UnicornEngine methods.
 */
import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';
import { existsSync } from 'node:fs';
import {
  NATIVE_HELPER,
  decodeVersion,
  formatVersion,
  unicornCandidates,
  versionOk,
  type UnicornVersion,
} from './locate.js';
import { UcErr } from './constants.js';

type Fn = (...args: unknown[]) => unknown;

export class UnicornError extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${call} failed: ${detail} (uc_err ${code})`);
    this.name = 'UnicornError';
  }
}

export class UnicornLoadError extends Error {
  override name = 'UnicornLoadError';
}

export interface UnicornLibrary {
  readonly path: string;
  readonly source: string;
  readonly version: UnicornVersion;
  readonly fn: {
    open: Fn;
    close: Fn;
    strerror: Fn;
    emuStart: Fn;
    emuStop: Fn;
    regRead: Fn;
    regWrite: Fn;
    regReadBatch: Fn;
    memMapPtr: Fn;
    mmioMap: Fn;
    memRead: Fn;
    memWrite: Fn;
    hookDel: Fn;
    contextAlloc: Fn;
    contextSave: Fn;
    contextRestore: Fn;
    contextFree: Fn;
    contextSize: Fn;
    ctl0: Fn;
    ctl1: Fn;
    ctl2: Fn;
    hookAddInsn: Fn;
    hookAdd: Fn;
    blockHook: Fn;
    pagingState: Fn;
    codeCounter: Fn;
    watchStopHook: Fn;
    initIrq: Fn;
    findCpu: Fn;
    findInterruptRequest: Fn;
    raiseIrq: Fn;
    takeIrq: Fn;
    irqWindow: Fn;
    initIo: Fn;
    ioHooks: Fn;
  };
  readonly proto: {
    in: TypeObject;
    out: TypeObject;
    intr: TypeObject;
    insnInvalid: TypeObject;
    cpuid: TypeObject;
    tlbFill: TypeObject;
    mmioRead: TypeObject;
    mmioWrite: TypeObject;
    memInvalid: TypeObject;
    mem: TypeObject;
    code: TypeObject;
  };
}

let loaded: UnicornLibrary | undefined;

/** Loads Unicorn once per process; refuses anything older than 2.1 and says why. */
export function loadUnicorn(): UnicornLibrary {
  if (loaded) return loaded;
  const candidates = unicornCandidates();
  if (candidates.length === 0) {
    throw new UnicornLoadError(
      'libunicorn.so.2 not found: run `npm install` (it fetches Unicorn 2.1 into .cache/unicorn) or set FIRMAMENT_UNICORN to a libunicorn >= 2.1',
    );
  }
  const rejected: string[] = [];
  for (const c of candidates) {
    if (!existsSync(c.path)) {
      rejected.push(`${c.path} (${c.source}): file not found`);
      continue;
    }
    let lib: LibraryHandle;
    try {
      lib = koffi.load(c.path);
    } catch (e) {
      rejected.push(`${c.path} (${c.source}): ${(e as Error).message}`);
      continue;
    }
    const version = decodeVersion((lib.func('unsigned int uc_version(void *major, void *minor)')(null, null) as number) >>> 0);
    if (!versionOk(version)) {
      rejected.push(
        `${c.path} (${c.source}) is Unicorn ${formatVersion(version)}: Firmament needs >= 2.1 because 2.0.x does not translate through page tables (it uses virtual addresses as physical ones)`,
      );
      continue;
    }
    loaded = bind(lib, c.path, c.source, version);
    return loaded;
  }
  throw new UnicornLoadError(`no usable Unicorn:\n  ${rejected.join('\n  ')}`);
}

/** fm_abi_version() of machine/cpu/native/fmcpu.c that this code expects (the slice struct layout). */
const NATIVE_ABI = 3;

function bind(lib: LibraryHandle, path: string, source: string, version: UnicornVersion): UnicornLibrary {
  if (!existsSync(NATIVE_HELPER)) {
    throw new UnicornLoadError(`native CPU helper ${NATIVE_HELPER} is missing: run \`npm install\` (or node tools/setup.mjs)`);
  }
  const helper = koffi.load(NATIVE_HELPER);
  const init = helper.func('int fm_init(const char *path)');
  const rc = init(path) as number;
  if (rc !== 0) throw new UnicornLoadError(`native CPU helper could not find uc_emu_stop in ${path} (rc ${rc})`);
  const abi = helper.func('int fm_abi_version(void)')() as number;
  if (abi !== NATIVE_ABI) throw new UnicornLoadError(`native CPU helper ${NATIVE_HELPER} has ABI ${abi}, this checkout needs ${NATIVE_ABI}: rebuild it with \`node tools/setup.mjs --no-images\` (or npm install)`);

  const proto = {
    in: koffi.proto('uint32_t fm_in_cb(void *uc, uint32_t port, int size, void *user)'),
    out: koffi.proto('void fm_out_cb(void *uc, uint32_t port, int size, uint32_t value, void *user)'),
    intr: koffi.proto('void fm_intr_cb(void *uc, uint32_t intno, void *user)'),
    insnInvalid: koffi.proto('bool fm_insn_invalid_cb(void *uc, void *user)'),
    cpuid: koffi.proto('int fm_cpuid_cb(void *uc, void *user)'),
    tlbFill: koffi.proto('bool fm_tlb_cb(void *uc, uint64_t vaddr, int type, void *entry, void *user)'),
    mmioRead: koffi.proto('uint64_t fm_mmio_read_cb(void *uc, uint64_t offset, unsigned int size, void *user)'),
    mmioWrite: koffi.proto('void fm_mmio_write_cb(void *uc, uint64_t offset, unsigned int size, uint64_t value, void *user)'),
    memInvalid: koffi.proto('bool fm_mem_invalid_cb(void *uc, int type, uint64_t addr, int size, int64_t value, void *user)'),
    mem: koffi.proto('void fm_mem_cb(void *uc, int type, uint64_t addr, int size, int64_t value, void *user)'),
    code: koffi.proto('void fm_code_cb(void *uc, uint64_t address, uint32_t size, void *user)'),
  };
  const fn = {
    open: lib.func('int uc_open(int arch, int mode, _Out_ void **uc)'),
    close: lib.func('int uc_close(void *uc)'),
    strerror: lib.func('const char *uc_strerror(int code)'),
    emuStart: lib.func('int uc_emu_start(void *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count)'),
    emuStop: lib.func('int uc_emu_stop(void *uc)'),
    regRead: lib.func('int uc_reg_read(void *uc, int regid, void *value)'),
    regWrite: lib.func('int uc_reg_write(void *uc, int regid, const void *value)'),
    regReadBatch: lib.func('int uc_reg_read_batch(void *uc, int *regs, void **vals, int count)'),
    memMapPtr: lib.func('int uc_mem_map_ptr(void *uc, uint64_t address, size_t size, uint32_t perms, void *ptr)'),
    mmioMap: lib.func('int uc_mmio_map(void *uc, uint64_t address, size_t size, void *read_cb, void *user_read, void *write_cb, void *user_write)'),
    memRead: lib.func('int uc_mem_read(void *uc, uint64_t address, void *bytes, size_t size)'),
    memWrite: lib.func('int uc_mem_write(void *uc, uint64_t address, const void *bytes, size_t size)'),
    hookDel: lib.func('int uc_hook_del(void *uc, uint64_t hh)'),
    contextAlloc: lib.func('int uc_context_alloc(void *uc, _Out_ void **context)'),
    contextSave: lib.func('int uc_context_save(void *uc, void *context)'),
    contextRestore: lib.func('int uc_context_restore(void *uc, void *context)'),
    contextFree: lib.func('int uc_context_free(void *context)'),
    contextSize: lib.func('size_t uc_context_size(void *uc)'),
    ctl0: lib.func('int uc_ctl(void *uc, unsigned int control, ...)'),
    ctl1: lib.func('int uc_ctl(void *uc, unsigned int control, ...)'),
    ctl2: lib.func('int uc_ctl(void *uc, unsigned int control, ...)'),
    hookAddInsn: lib.func('int uc_hook_add(void *uc, _Out_ uint64_t *hh, int type, void *callback, void *user, uint64_t begin, uint64_t end, ...)'),
    hookAdd: lib.func('int uc_hook_add(void *uc, _Out_ uint64_t *hh, int type, void *callback, void *user, uint64_t begin, uint64_t end, ...)'),
    blockHook: helper.func('int fm_add_block_hook(void *uc, _Out_ uint64_t *hh, void *slice)'),
    pagingState: helper.func('int fm_paging_state(void *uc, void *out)'),
    codeCounter: helper.func('int fm_add_code_counter(void *uc, _Out_ uint64_t *hh, void *counter)'),
    watchStopHook: helper.func('int fm_add_watch_stop_hook(void *uc, _Out_ uint64_t *hh, void *w)'),
    initIrq: helper.func('int fm_init_irq(void)'),
    findCpu: helper.func('int fm_find_cpu(void *uc, const uint8_t *regs, uint32_t len, uint32_t regsOffset, uint32_t scan, _Out_ uint64_t *out)'),
    findInterruptRequest: helper.func('int fm_find_interrupt_request(void *uc, uint32_t cpuField, uint32_t envOffset, int mask)'),
    raiseIrq: helper.func('void fm_raise_irq(void *uc, uint32_t cpuField, int mask)'),
    takeIrq: helper.func('int fm_take_irq(void *uc, uint32_t cpuField, uint32_t requestOffset, int mask)'),
    irqWindow: helper.func('int fm_irq_window(void *uc, uint32_t cpuField, uint32_t eflagsAt, uint32_t hflagsAt)'),
    initIo: helper.func('int fm_init_io(void)'),
    ioHooks: helper.func('int fm_add_io_hooks(void *uc, void *hh, void *io)'),
  };
  return { path, source, version, fn: fn as unknown as UnicornLibrary['fn'], proto };
}

export function check(lib: UnicornLibrary, call: string, rc: unknown): void {
  const code = rc as number;
  if (code !== UcErr.OK) throw new UnicornError(call, code, String(lib.fn.strerror(code)));
}
