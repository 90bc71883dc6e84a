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
#include <dlfcn.h>
#include <stdint.h>

typedef int (*emu_stop_fn)(void *uc);
typedef int (*hook_add_fn)(void *uc, void *hh, int type, void *cb, void *user, uint64_t begin, uint64_t end, ...);
typedef int (*reg_read_fn)(void *uc, int regid, void *value);

/* Shared with TypeScript (machine/cpu/slice.ts); keep offsets in sync. */
typedef struct {
  uint64_t units;       /* 0: code bytes of blocks entered (virtual time) */
  uint64_t limit;       /* 8: stop before the first block at or past this */
  uint32_t stopped;     /* 16: 1 = limit reached, 2 = request honoured */
  uint32_t request;     /* 20: set by JS hooks to stop at the next block */
  uint64_t blocks;      /* 24: blocks entered */
} fm_slice;

static emu_stop_fn p_emu_stop;
static hook_add_fn p_hook_add;
static reg_read_fn p_reg_read;

int fm_init(const char *unicorn_path) {
  void *h = dlopen(unicorn_path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) return -1;
  p_emu_stop = (emu_stop_fn)dlsym(h, "uc_emu_stop");
  p_hook_add = (hook_add_fn)dlsym(h, "uc_hook_add");
  p_reg_read = (reg_read_fn)dlsym(h, "uc_reg_read");
  return (p_emu_stop && p_hook_add && p_reg_read) ? 0 : -2;
}

static void block_hook(void *uc, uint64_t address, uint32_t size, void *user) {
  fm_slice *s = (fm_slice *)user;
  (void)address;
  if (s->request) {
    s->stopped = 2;
    p_emu_stop(uc);
    return;
  }
  if (s->units >= s->limit) {
    s->stopped = 1;
    p_emu_stop(uc);
    return;
  }
  s->units += size;
  s->blocks++;
}

/* UC_HOOK_BLOCK over the whole address space (begin 1 > end 0). */
int fm_add_block_hook(void *uc, uint64_t *hh, fm_slice *slice) {
  if (!p_hook_add) return -1;
  return p_hook_add(uc, hh, 1 << 3, (void *)block_hook, slice, 1, 0);
}

int fm_abi_version(void) { return 1; }

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
