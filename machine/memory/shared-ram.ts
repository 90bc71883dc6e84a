/**
 * Guest RAM in a shared-memory file (a memfd) instead of a SharedArrayBuffer:
 * the bytes outlive the process that made them, so a new process (live
 * update) maps the same pages and nothing of guest memory is copied. The
 * mapping is exposed as an external ArrayBuffer (koffi.view), so every user
 * of PhysicalMemory.ram keeps working, and engines map it with uc_mem_map_ptr
 * exactly as they map a SharedArrayBuffer.
 */
import { existsSync } from 'node:fs';
import koffi from 'koffi';
import { NATIVE_HELPER } from '../cpu/unicorn/locate.js';

export class SharedRamError extends Error {
  override name = 'SharedRamError';
}

interface ShmLib {
  create: (name: string, size: number) => number;
  map: (fd: number, size: number, err: Int32Array) => unknown;
  unmap: (p: unknown, size: number) => number;
  stat: (fd: number, out: BigUint64Array) => number;
  close: (fd: number) => number;
}

let lib: ShmLib | null = null;

function shm(): ShmLib {
  if (lib) return lib;
  if (!existsSync(NATIVE_HELPER)) throw new SharedRamError(`native helper ${NATIVE_HELPER} is missing: run \`node tools/setup.mjs --no-images\``);
  const h = koffi.load(NATIVE_HELPER);
  try {
    lib = {
      create: h.func('int fm_shm_create(const char *name, uint64_t size)') as ShmLib['create'],
      map: h.func('void *fm_shm_map(int fd, uint64_t size, _Out_ int *err)') as ShmLib['map'],
      unmap: h.func('int fm_shm_unmap(void *p, uint64_t size)') as ShmLib['unmap'],
      stat: h.func('int fm_shm_stat(int fd, _Out_ uint64_t *out)') as ShmLib['stat'],
      close: h.func('int fm_shm_close(int fd)') as ShmLib['close'],
    };
  } catch (e) {
    throw new SharedRamError(`native helper ${NATIVE_HELPER} has no shared-RAM calls (built from an older checkout?): rebuild with \`node tools/setup.mjs --no-images\` (${(e as Error).message})`);
  }
  return lib;
}

function errnoText(code: number): string {
  const name = Object.entries(koffi.os.errno).find(([, v]) => v === code)?.[0];
  return name ?? `errno ${code}`;
}

export interface SharedRamInfo {
  fd: number;
  inode: number;
  device: number;
  bytes: number;
}

/** A mapped memfd: `bytes` is a Uint8Array over the whole file. */
export class SharedRam {
  private mapped: unknown;

  private constructor(
    readonly fd: number,
    readonly size: number,
    mapped: unknown,
    readonly bytes: Uint8Array,
  ) {
    this.mapped = mapped;
  }

  /** A new zero-filled memfd of `size` bytes, mapped. */
  static create(size: number, name = 'firmament-ram'): SharedRam {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0) throw new SharedRamError(`shared RAM size ${size} must be a positive multiple of 4 KiB`);
    const fd = shm().create(name, size);
    if (fd < 0) throw new SharedRamError(`memfd_create('${name}', ${size} bytes) failed: ${errnoText(-fd)}`);
    try {
      return SharedRam.map(fd, size);
    } catch (e) {
      shm().close(fd);
      throw e;
    }
  }

  /** Maps an inherited memfd (live update); refuses a file whose size is not `size`. */
  static adopt(fd: number, size: number): SharedRam {
    const info = SharedRam.stat(fd);
    if (info.bytes !== size) throw new SharedRamError(`shared RAM fd ${fd} is ${info.bytes} bytes, the state record says ${size}`);
    return SharedRam.map(fd, size);
  }

  static stat(fd: number): SharedRamInfo {
    const out = new BigUint64Array(3);
    const rc = shm().stat(fd, out);
    if (rc < 0) throw new SharedRamError(`fstat of shared RAM fd ${fd} failed: ${errnoText(-rc)}`);
    return { fd, inode: Number(out[0]), bytes: Number(out[1]), device: Number(out[2]) };
  }

  private static map(fd: number, size: number): SharedRam {
    const err = new Int32Array(1);
    const p = shm().map(fd, size, err);
    if (p === null) throw new SharedRamError(`mmap of shared RAM fd ${fd} (${size} bytes) failed: ${errnoText(err[0]!)}`);
    const view = new Uint8Array(koffi.view(p, size) as ArrayBuffer);
    return new SharedRam(fd, size, p, view);
  }

  info(): SharedRamInfo {
    return SharedRam.stat(this.fd);
  }

  /**
   * Unmaps (the ArrayBuffer must no longer be used) and closes the fd. Only
   * for a process that keeps no engine or view over the RAM: the memory lives
   * on while another process maps it.
   */
  close(): void {
    if (this.mapped === null) return;
    shm().unmap(this.mapped, this.size);
    shm().close(this.fd);
    this.mapped = null;
  }
}
