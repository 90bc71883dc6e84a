/*
 * Firmament's tiny native CPU helper, loaded next to libunicorn.
 *
 * Unicorn's emu_start timeout and cross-thread uc_emu_stop can rewind RIP to
 * the start of a translation block after part of it ran, executing
 * instructions twice. The only cheap safe preemption point is a block hook
 * that calls uc_emu_stop before the block runs. Doing that in JavaScript
 * would cost a JS call per block, so this hook lives in C. It also counts
 * executed code bytes, the deterministic source of the machine's virtual time.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdint.h>

typedef int (*emu_stop_fn)(void *uc);
typedef int (*hook_add_fn)(void *uc, void *hh, int type, void *cb, void *user, uint64_t begin, uint64_t end, ...);
typedef int (*reg_read_fn)(void *uc, int regid, void *value);

/* Shared with TypeScript (machine/cpu/host-cpu.ts SLICE); keep offsets in sync. */
typedef struct {
  uint64_t units;       /* 0: code bytes of blocks entered (virtual time) */
  uint64_t limit;       /* 8: stop before the first block at or past this (0 with a request) */
  uint32_t stopped;     /* 16: 1 = limit reached, 2 = request honoured */
  uint32_t request;     /* 20: set by JS hooks (which also zero limit) to stop at the next block */
  uint64_t blocks;      /* 24: unused since ABI 3 (a counter here cost every block a store) */
  uint64_t stop_pc;     /* 32: linear address of the block the hook stopped before */
} fm_slice;

static emu_stop_fn p_emu_stop;
static hook_add_fn p_hook_add;
static reg_read_fn p_reg_read;
static void *unicorn;

int fm_init(const char *unicorn_path) {
  void *h = dlopen(unicorn_path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) return -1;
  unicorn = h;
  p_emu_stop = (emu_stop_fn)dlsym(h, "uc_emu_stop");
  p_hook_add = (hook_add_fn)dlsym(h, "uc_hook_add");
  p_reg_read = (reg_read_fn)dlsym(h, "uc_reg_read");
  return (p_emu_stop && p_hook_add && p_reg_read) ? 0 : -2;
}

/*
 * Runs before every translation block, so its common path is one compare and one add: a stop
 * request zeroes `limit` as well, and only the rare stop looks at why.
 */
static void block_hook(void *uc, uint64_t address, uint32_t size, void *user) {
  fm_slice *s = (fm_slice *)user;
  uint64_t units = s->units;
  if (__builtin_expect(units >= s->limit, 0)) {
    /* With any UC_HOOK_CODE installed, Unicorn 2.1 does not restore the PC of a block
       it leaves before running it: the caller rewinds to stop_pc (X86Cpu.runSlice). */
    s->stopped = s->request ? 2 : 1;
    s->stop_pc = address;
    p_emu_stop(uc);
    return;
  }
  s->units = units + size;
}

/* UC_HOOK_BLOCK over the whole address space (begin 1 > end 0). */
int fm_add_block_hook(void *uc, uint64_t *hh, fm_slice *slice) {
  if (!p_hook_add) return -1;
  return p_hook_add(uc, hh, 1 << 3, (void *)block_hook, slice, 1, 0);
}

/* 3: a request must zero fm_slice.limit (2: stop_pc). Checked at load, so a stale build fails loudly. */
int fm_abi_version(void) { return 3; }

/* x86 register ids from unicorn/x86.h (2.1). */
enum { REG_CS = 11, REG_CR0 = 50, REG_CR3 = 53, REG_CR4 = 54, REG_MSR = 248 };

/*
 * Everything the page walker needs on a TLB miss in one FFI call:
 * out = { CR0, CR3, CR4, EFER, CS selector }.
 */
int fm_paging_state(void *uc, uint64_t *out) {
  struct { uint32_t rid; uint64_t value; } msr = { 0xC0000080u, 0 };
  uint64_t cs = 0;
  int rc = p_reg_read(uc, REG_CR0, &out[0]);
  rc |= p_reg_read(uc, REG_CR3, &out[1]);
  rc |= p_reg_read(uc, REG_CR4, &out[2]);
  rc |= p_reg_read(uc, REG_MSR, &msr);
  rc |= p_reg_read(uc, REG_CS, &cs);
  out[3] = msr.value;
  out[4] = cs & 0xffff;
  return rc;
}

/* Exact instruction counting for benchmarks (UC_HOOK_CODE in C: ~10 ns per instruction). */
static void code_counter(void *uc, uint64_t address, uint32_t size, void *user) {
  (void)uc; (void)address; (void)size;
  (*(uint64_t *)user)++;
}

int fm_add_code_counter(void *uc, uint64_t *hh, uint64_t *counter) {
  if (!p_hook_add) return -1;
  return p_hook_add(uc, hh, 1 << 2, (void *)code_counter, counter, 1, 0);
}

/*
 * Exact data watchpoints. A memory hook (JS) that sees a watched access sets
 * `armed`; this code hook, on every instruction, then stops before the next
 * one and records its linear address. QEMU puts PC back at the block's start
 * on a requested exit, so the caller writes RIP from stop_pc afterwards.
 */
typedef struct {
  uint32_t armed;   /* 0: set by the memory hook */
  uint32_t hit;     /* 4: 1 = stopped here, stop_pc is valid */
  uint64_t stop_pc; /* 8: linear address of the instruction after the access */
} fm_watch_stop;

static void watch_stop_hook(void *uc, uint64_t address, uint32_t size, void *user) {
  (void)size;
  fm_watch_stop *w = (fm_watch_stop *)user;
  if (!w->armed) return;
  w->armed = 0;
  w->hit = 1;
  w->stop_pc = address;
  p_emu_stop(uc);
}

int fm_add_watch_stop_hook(void *uc, uint64_t *hh, fm_watch_stop *w) {
  if (!p_hook_add) return -1;
  return p_hook_add(uc, hh, 1 << 2, (void *)watch_stop_hook, w, 1, 0);
}

/*
 * Native delivery of external interrupts: QEMU's own hardirq path.
 *
 * A vCPU context runs in SVM guest mode (for MSR exits, see
 * machine/cpu/x86/msr-intercept.ts), so QEMU services a virtual interrupt
 * request (CPU_INTERRUPT_VIRQ) before the next instruction whenever IF=1 and
 * no interrupt shadow is active: it reads the vector from the control area's
 * V_INTR_VECTOR and vectors through the guest's IDT/IVT itself, using its own
 * TLB. Unicorn has no API to raise the request, but libunicorn exports QEMU's
 * cpu_interrupt_handler; what it needs is the engine's CPUState, found once by
 * fm_find_cpu below.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*cpu_interrupt_fn)(void *cpu, int mask);
typedef int (*pending_fn)(void *cpu, int mask);
typedef int (*reg_write_fn)(void *uc, int regid, const void *value);
static cpu_interrupt_fn *p_cpu_interrupt_handler;

static pending_fn p_pending;
static reg_write_fn p_reg_write;

/* QEMU internals libunicorn exports (it exports all of them). */
int fm_init_irq(void) {
  if (!unicorn) return -1;
  p_cpu_interrupt_handler = (cpu_interrupt_fn *)dlsym(unicorn, "cpu_interrupt_handler");
  p_pending = (pending_fn)dlsym(unicorn, "x86_cpu_pending_interrupt_x86_64");
  p_reg_write = (reg_write_fn)dlsym(unicorn, "uc_reg_write");
  if (!p_pending || !p_reg_write) return -2;
  return p_cpu_interrupt_handler && *p_cpu_interrupt_handler ? 0 : -2;
}

/* Readable address ranges of this process, from /proc/self/maps. */
typedef struct { uintptr_t lo, hi; } range;
static range *maps;
static int nmaps;

static void load_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int cap = 0;
  nmaps = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
    if (nmaps && maps[nmaps - 1].hi == lo) { /* adjacent: one readable range */
      maps[nmaps - 1].hi = hi;
      continue;
    }
    if (nmaps == cap) {
      cap = cap ? cap * 2 : 256;
      maps = realloc(maps, (size_t)cap * sizeof *maps);
      if (!maps) { nmaps = 0; break; }
    }
    maps[nmaps].lo = lo;
    maps[nmaps].hi = hi;
    nmaps++;
  }
  fclose(f);
}

/* Bytes readable from p on (0 if p is not mapped readable), at most max. */
static size_t readable(uintptr_t p, size_t max) {
  for (int i = 0; i < nmaps; i++)
    if (p >= maps[i].lo && p < maps[i].hi) {
      size_t n = maps[i].hi - p;
      return n < max ? n : max;
    }
  return 0;
}

enum { REG_EFLAGS = 25 };

/* CPUState to env in X86CPU is about 35 KiB in 2.1.1 (tb_jmp_cache, the TLB); accepted up to this. */
#define MAX_ENV_OFFSET 0x100000u

/*
 * Is `v` the CPUState whose env is at `env`? QEMU's own
 * x86_cpu_pending_interrupt (which finds env at its compiled offset) must
 * follow EFLAGS.IF as we toggle it. A wrong `v` makes QEMU read wherever its
 * offset lands, which may not be mapped, so the check runs in a forked child:
 * a fault there only ends the child.
 */
static int is_cpu_state(void *uc, uintptr_t v, uintptr_t env) {
  if (v >= env || env - v > MAX_ENV_OFFSET || (v & 7)) return 0;
  if (readable(v, env - v) < env - v) return 0;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    uint64_t on = 0x202, masked_flags = 0x2;
    p_reg_write(uc, REG_EFLAGS, &masked_flags);
    int masked = p_pending((void *)v, 0x100);
    p_reg_write(uc, REG_EFLAGS, &on);
    int open = p_pending((void *)v, 0x100);
    _exit(masked == 0 && open == 0x100 ? 0 : 1);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * Finds the engine's CPUState. QEMU's X86CPU starts with it and env follows at
 * a build-specific offset. `regs` are the general registers of a just-saved
 * context (at `regs_offset` in env), values the caller made distinctive, so they
 * exist only in env and in saved copies; env is the copy for which a
 * uc_struct pointer passes is_cpu_state.
 * out = { offset of `cpu` in uc_struct, env - CPUState }.
 */
int fm_find_cpu(void *uc, const uint8_t *regs, uint32_t regs_len, uint32_t regs_offset, uint32_t scan, uint64_t *out) {
  int rc = -1;
  if (!p_pending || !p_reg_write) return -3;
  load_maps();
  if (readable((uintptr_t)uc, scan) < scan) { rc = -2; goto done; }
  for (uint32_t off = 0; off + 8 <= scan && rc != 0; off += 8) {
    uintptr_t p = *(uintptr_t *)((uint8_t *)uc + off);
    if (!p || (p & 7)) continue;
    size_t n = readable(p, 1u << 22);
    for (size_t d = regs_offset + 7 - (regs_offset + 7) % 8; d + regs_len <= n && rc != 0; d += 8) {
      uintptr_t env = p + d - regs_offset;
      if (memcmp((void *)(p + d), regs, regs_len) != 0) continue;
      for (uint32_t f = 0; f + 8 <= scan; f += 8) {
        uintptr_t v = *(uintptr_t *)((uint8_t *)uc + f);
        if (!is_cpu_state(uc, v, env)) continue;
        out[0] = f;
        out[1] = env - v;
        rc = 0;
        break;
      }
    }
  }
done:
  free(maps);
  maps = NULL;
  nmaps = 0;
  return rc;
}

static void *cpu_of(void *uc, uint32_t cpu_field) { return *(void **)((uint8_t *)uc + cpu_field); }

/*
 * Finds CPUState.interrupt_request: raises a request bit through QEMU's
 * handler and looks for the one 32-bit field below env that gained it.
 * Returns its offset in CPUState, or a negative count of candidates.
 */
int fm_find_interrupt_request(void *uc, uint32_t cpu_field, uint32_t env_offset, int mask) {
  uint8_t *cs = cpu_of(uc, cpu_field);
  uint8_t *before = malloc(env_offset);
  int found = -1, hits = 0;
  if (!before) return -100;
  memcpy(before, cs, env_offset);
  (*p_cpu_interrupt_handler)(cs, mask);
  for (uint32_t o = 0; o + 4 <= env_offset; o += 4) {
    uint32_t a, b;
    memcpy(&a, before + o, 4);
    memcpy(&b, cs + o, 4);
    if (a != b && b == (a | (uint32_t)mask)) { found = (int)o; hits++; }
  }
  if (hits == 1) *(uint32_t *)(cs + found) &= ~(uint32_t)mask;
  free(before);
  return hits == 1 ? found : -hits - 1;
}

/* Raises `mask` in the CPU's interrupt requests (serviced at the next instruction boundary of a run). */
void fm_raise_irq(void *uc, uint32_t cpu_field, int mask) { (*p_cpu_interrupt_handler)(cpu_of(uc, cpu_field), mask); }

/* Clears `mask`; returns the bits of it that were still pending. */
int fm_take_irq(void *uc, uint32_t cpu_field, uint32_t request_offset, int mask) {
  uint32_t *r = (uint32_t *)((uint8_t *)cpu_of(uc, cpu_field) + request_offset);
  int was = (int)(*r & (uint32_t)mask);
  *r &= ~(uint32_t)mask;
  return was;
}

/* The interrupt window straight from env, without a context copy: bit 0 = EFLAGS.IF, bit 1 = interrupt shadow (HF_INHIBIT_IRQ). */
int fm_irq_window(void *uc, uint32_t cpu_field, uint32_t eflags_at, uint32_t hflags_at) {
  const uint8_t *cs = cpu_of(uc, cpu_field);
  uint32_t eflags, hflags;
  memcpy(&eflags, cs + eflags_at, 4);
  memcpy(&hflags, cs + hflags_at, 4);
  return (int)(((eflags >> 9) & 1) | (((hflags >> 3) & 1) << 1));
}

/*
 * Port I/O permission (IOPL and the TSS I/O permission bitmap).
 *
 * Unicorn 2.1 compiles QEMU's gen_check_io out ("allow all I/O instructions"),
 * so IN/OUT/INS/OUTS run at any CPL. These wrappers are the engine's IN/OUT
 * hooks; they call the JavaScript port handlers (fm_io.js_in/js_out). Before
 * the call they tell JavaScript whether the access needs the bitmap check
 * (protected mode and CPL > IOPL, or virtual-8086 mode: SDM Vol. 1 19.5);
 * JavaScript makes it and, to refuse the access, sets `fault` without touching
 * the device. The fault is then raised here, precisely, the way QEMU's own
 * check_io raises it: raise_exception_err_ra with the return address into the
 * translated block, so QEMU restores EIP (to the IN/OUT) and the lazy flags
 * from it and no later instruction of the block runs. That address is the
 * first frame of the call stack outside any loaded object (libunicorn has
 * unwind tables; the block is anonymous JIT memory).
 */
#include <unwind.h>

typedef uint32_t (*fm_in_fn)(void *uc, uint32_t port, int size, void *user);
typedef void (*fm_out_fn)(void *uc, uint32_t port, int size, uint32_t value, void *user);
typedef void (*raise_err_ra_fn)(void *env, int vector, int error_code, uintptr_t retaddr);

/* Shared with TypeScript (machine/cpu/x86/io-permission.ts); keep offsets in sync. */
typedef struct {
  fm_in_fn js_in;       /* 0 */
  fm_out_fn js_out;     /* 8 */
  uint32_t cpu_field;   /* 16: CPUState * in uc_struct */
  uint32_t env_offset;  /* 20: CPUX86State from CPUState */
  uint32_t hflags_at;   /* 24: in env */
  uint32_t eflags_at;   /* 28: in env */
  uint32_t check;       /* 32: set here: this access needs the bitmap check */
  uint32_t fault;       /* 36: set by JS: vector + 1, 0 = allowed */
  uint32_t error_code;  /* 40: set by JS with fault */
  uint32_t unraised;    /* 44: faults that could not be raised precisely (the run is stopped) */
  uint64_t denied;      /* 48: faults raised */
} fm_io;

static raise_err_ra_fn p_raise_err_ra;

int fm_init_io(void) {
  if (!unicorn) return -1;
  p_raise_err_ra = (raise_err_ra_fn)dlsym(unicorn, "raise_exception_err_ra_x86_64");
  return p_raise_err_ra ? 0 : -2;
}

enum { HF_CPL_MASK = 3, HF_PE = 1 << 7, HF_VM = 1 << 17 };

static void io_prepare(void *uc, fm_io *io) {
  const uint8_t *env = (const uint8_t *)cpu_of(uc, io->cpu_field) + io->env_offset;
  uint32_t hflags, eflags;
  memcpy(&hflags, env + io->hflags_at, 4);
  memcpy(&eflags, env + io->eflags_at, 4);
  uint32_t cpl = hflags & HF_CPL_MASK, iopl = (eflags >> 12) & 3;
  io->check = (hflags & HF_PE) && (cpl > iopl || (hflags & HF_VM)) ? 1 : 0;
  io->fault = 0;
}

typedef struct { uintptr_t found; int depth; } tb_search;

static _Unwind_Reason_Code tb_frame(struct _Unwind_Context *ctx, void *arg) {
  tb_search *s = (tb_search *)arg;
  uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
  Dl_info info;
  if (++s->depth > 16 || !ip) return _URC_NORMAL_STOP;
  if (!dladdr((void *)ip, &info)) {
    s->found = ip;
    return _URC_NORMAL_STOP;
  }
  return _URC_NO_REASON;
}

static void io_raise(void *uc, fm_io *io) {
  tb_search s = { 0, 0 };
  _Unwind_Backtrace(tb_frame, &s);
  if (!s.found || !p_raise_err_ra) {
    /* Cannot name the instruction: stop the run instead of running on. */
    io->unraised++;
    p_emu_stop(uc);
    return;
  }
  io->denied++;
  void *env = (uint8_t *)cpu_of(uc, io->cpu_field) + io->env_offset;
  p_raise_err_ra(env, (int)io->fault - 1, (int)io->error_code, s.found);
}

static uint32_t io_in_hook(void *uc, uint32_t port, int size, void *user) {
  fm_io *io = (fm_io *)user;
  io_prepare(uc, io);
  uint32_t v = io->js_in(uc, port, size, NULL);
  if (io->fault) io_raise(uc, io);
  return v;
}

static void io_out_hook(void *uc, uint32_t port, int size, uint32_t value, void *user) {
  fm_io *io = (fm_io *)user;
  io_prepare(uc, io);
  io->js_out(uc, port, size, value, NULL);
  if (io->fault) io_raise(uc, io);
}

/* UC_HOOK_INSN for IN (218) and OUT (500) through the wrappers above. */
int fm_add_io_hooks(void *uc, uint64_t *hh, fm_io *io) {
  if (!p_hook_add) return -1;
  int rc = p_hook_add(uc, &hh[0], 1 << 1, (void *)io_in_hook, io, 1, 0, 218);
  if (rc) return rc;
  return p_hook_add(uc, &hh[1], 1 << 1, (void *)io_out_hook, io, 1, 0, 500);
}
