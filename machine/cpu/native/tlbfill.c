/*
 * Native TLB fill: Unicorn's UC_HOOK_TLB_FILL answered in C for the common case, a refill of a
 * page the guest has touched before.
 *
 * The TypeScript walkers (machine/cpu/x86/paging.ts for the guest's tables, hypervisor/ept/
 * ept-walk.ts for the EPT) stay the reference and handle everything else. This fast path only
 * answers when the answer needs no state change and no decision outside the tables:
 *   - the guest walk (32-bit without PSE pages, PAE, 4-level) and every EPT walk under it find
 *     present entries, no reserved bits, the permissions the access needs, and every
 *     accessed/dirty bit the reference walkers would set already set (so they would write
 *     nothing);
 *   - the access is a read or a write (fetch fills register code pages in TypeScript);
 *   - every table entry and the final page are in host RAM (not ROM, MMIO or holes).
 * Otherwise it calls the TypeScript hook, which faults, resolves EPT violations, sets A/D bits,
 * watches pages and counts code pages as before. A test compares both on random tables
 * (test/perf/native-tlb.test.ts).
 */
#define _GNU_SOURCE /* RTLD_NOLOAD */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef bool (*tlb_cb)(void *uc, uint64_t vaddr, int type, void *entry, void *user);
typedef int (*hook_add_fn)(void *uc, void *hh, int type, void *cb, void *user, uint64_t begin, uint64_t end, ...);
typedef int (*reg_read_fn)(void *uc, int regid, void *value);

/* Shared with TypeScript (machine/cpu/native-tlb.ts); keep offsets in sync. */
typedef struct {
  uint64_t eptp;     /* 0: EPT pointer of the bound vCPU; 0 = no EPT (bare metal) */
  uint64_t low_top;  /* 8: host RAM below 4 GiB ends here (PhysicalMemory.lowRamTop) */
  uint64_t ram_size; /* 16: bytes of host RAM */
  uint64_t fast;     /* 24: fills answered here */
  uint64_t slow;     /* 32: fills passed to TypeScript */
  uint32_t enabled;  /* 40: 0 = pass every fill to TypeScript */
  uint32_t max_phys; /* 44: MAXPHYADDR (address bits from here to 51 are reserved) */
  uint8_t *ram;      /* 48: host RAM (set by fm_tlb_install) */
  tlb_cb js;         /* 56: the TypeScript hook (set by fm_tlb_install) */
  uint8_t *code_map; /* 64: 1 bit per 4 KiB of host RAM (by RAM offset): the page holds translated code */
  /* Where the walker's registers live in QEMU's CPUX86State, so a miss reads them straight from
     memory instead of five uc_reg_read calls (each a switch over every register id). 0 in
     cs_at = not known: uc_reg_read. Found and checked by native-tlb.ts (pagingEnvLayout). */
  uint32_t cpu_field;  /* 72: CPUState * in uc_struct */
  uint32_t env_offset; /* 76: from CPUState to env (context-blob offset 0) */
  uint32_t cr_at;      /* 80: cr[0] in env (cr[3], cr[4] follow at +24, +32) */
  uint32_t efer_at;    /* 84: efer in env */
  uint32_t cs_at;      /* 88: segs[R_CS].selector in env */
  uint32_t pad;        /* 92 */
} fm_tlb;

typedef struct {
  uint64_t paddr;
  uint32_t perms;
} uc_tlb_entry;

enum { MEM_READ = 16, MEM_WRITE = 17, MEM_FETCH = 18 };
enum { PROT_READ = 1, PROT_WRITE = 2 };
enum { HOOK_TLB_FILL = 1 << 17 };

#define FOUR_GIB 0x100000000ull
#define ADDR_MASK 0x000ffffffffff000ull
#define CR0_PE 1ull
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define EFER_NXE (1ull << 11)
#define EFER_LMA (1ull << 10)

static hook_add_fn p_hook_add;

int fm_tlb_init(const char *unicorn_path) {
  void *h = dlopen(unicorn_path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) return -1;
  p_hook_add = (hook_add_fn)dlsym(h, "uc_hook_add");
  return p_hook_add ? 0 : -2;
}

/* 3: fm_tlb layout above (with the env offsets). */
int fm_tlb_abi_version(void) { return 3; }

/* Host-physical address -> offset in host RAM, as PhysicalMemory.ramOffset; 0 if not plain RAM. */
static inline int ram_offset(const fm_tlb *t, uint64_t pa, uint64_t len, uint64_t *off) {
  if (pa < t->low_top) {
    if (pa + len > t->low_top) return 0;
    if (pa + len > 0xa0000 && pa < 0x100000) return 0; /* legacy hole and BIOS alias */
    *off = pa;
    return 1;
  }
  if (pa >= FOUR_GIB && pa - FOUR_GIB + len <= t->ram_size - t->low_top) {
    *off = pa - FOUR_GIB + t->low_top;
    return 1;
  }
  return 0;
}

static inline int host_read(const fm_tlb *t, uint64_t hpa, int size, uint64_t *v) {
  uint64_t off;
  if (!ram_offset(t, hpa, (uint64_t)size, &off)) return 0;
  if (size == 8) {
    memcpy(v, t->ram + off, 8);
  } else {
    uint32_t x;
    memcpy(&x, t->ram + off, 4);
    *v = x;
  }
  return 1;
}

static inline uint64_t bits(int lo, int hi) { return ((hi >= 63) ? ~0ull : ((1ull << (hi + 1)) - 1)) & ~((1ull << lo) - 1); }

/*
 * EPT walk of `gpa` for `write` (else read) that changes nothing: 1 with the host address, the
 * combined W permission and the leaf's D bit, or 0 when ept-walk.ts would fault, find a
 * misconfiguration, or set an A/D bit.
 */
static int ept_translate(const fm_tlb *t, uint64_t gpa, int write, uint64_t *hpa, int *w_out, int *dirty_out) {
  uint64_t eptp = t->eptp;
  int ad = (int)((eptp >> 6) & 1);
  uint64_t mt = eptp & 7;
  if (mt != 0 && mt != 6) return 0;
  if (((eptp >> 3) & 7) != 3) return 0;
  if (eptp & (bits(7, 11) | bits((int)t->max_phys, 63))) return 0;
  if (gpa >> 48) return 0;
  uint64_t table = eptp & ADDR_MASK;
  int r = 1, w = 1;
  for (int i = 0; i < 4; i++) {
    int shift = 39 - 9 * i;
    uint64_t e;
    if (!host_read(t, table + ((gpa >> shift) & 0x1ff) * 8, 8, &e)) return 0;
    if (!(e & 7)) return 0;
    r &= (int)(e & 1);
    w &= (int)((e >> 1) & 1);
    if ((e & 2) && !(e & 1)) return 0;
    if (i == 0 && (e & 0x80)) return 0;
    int leaf = i == 3 || (e & 0x80);
    uint64_t rsv = t->max_phys < 52 ? bits((int)t->max_phys, 51) : 0;
    if (!leaf) rsv |= bits(3, 7);
    else if (i == 1) rsv |= bits(12, 29);
    else if (i == 2) rsv |= bits(12, 20);
    if (e & rsv) return 0;
    if (ad && !(e & (1ull << 8))) return 0;
    if (!leaf) {
      table = e & ADDR_MASK;
      continue;
    }
    uint64_t type = (e >> 3) & 7;
    if (type == 2 || type == 3 || type == 7) return 0;
    if (write ? !w : !r) return 0;
    if (ad && write && !(e & (1ull << 9))) return 0;
    uint64_t size = 1ull << shift;
    *hpa = (e & ADDR_MASK & ~(size - 1)) + (gpa & (size - 1));
    *w_out = w;
    *dirty_out = (int)((e >> 9) & 1);
    return 1;
  }
  return 0;
}

/* A guest page-table entry: through the EPT as a paging-structure access (a write with EPT A/D). */
static int guest_read(const fm_tlb *t, uint64_t gpa, int size, uint64_t *v) {
  if (!t->eptp) return host_read(t, gpa, size, v);
  uint64_t hpa;
  int w, d;
  if (!ept_translate(t, gpa, (int)((t->eptp >> 6) & 1), &hpa, &w, &d)) return 0;
  return host_read(t, hpa, size, v);
}

/*
 * The fill for `vaddr` (page-aligned) under the given control registers: 1 with out[0] = paddr
 * and out[1] = perms, as X86Cpu.tlbFill would answer, or 0 to ask TypeScript.
 */
int fm_tlb_walk(const fm_tlb *t, uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer, uint64_t cs, uint64_t vaddr, int type, uint64_t *out) {
  if (!t->enabled || !t->ram || (type != MEM_READ && type != MEM_WRITE)) return 0;
  int write = type == MEM_WRITE;
  int user = (cr0 & CR0_PE) ? (int)((cs & 3) == 3) : 0;
  int wp = (cr0 & CR0_WP) != 0;
  uint64_t gpa;
  int writable = 1, dirty = 1;
  if (!(cr0 & CR0_PG)) {
    gpa = vaddr & 0xffffffffull;
  } else {
    int fmt; /* 0: 32-bit, 1: PAE, 2: 4-level */
    if (!(cr4 & CR4_PAE)) fmt = 0;
    else if (efer & EFER_LMA) fmt = 2;
    else fmt = 1;
    int nxe = (efer & EFER_NXE) && fmt != 0;
    uint64_t rsv_hi = t->max_phys < 52 ? bits((int)t->max_phys, 51) : 0;
    int us = 1;
    int levels, shift, esize;
    uint64_t table;
    if (fmt == 2) {
      uint64_t top = vaddr >> 47;
      if (top != 0 && top != 0x1ffff) return 0;
      levels = 4, shift = 39, esize = 8, table = cr3 & ADDR_MASK;
    } else if (fmt == 1) {
      levels = 3, shift = 30, esize = 8, table = cr3 & 0xffffffe0ull;
    } else {
      levels = 2, shift = 22, esize = 4, table = cr3 & 0xfffff000ull;
    }
    for (int i = 0; i < levels; i++, shift -= (fmt == 0 ? 10 : 9)) {
      uint64_t idx_mask = fmt == 0 ? 0x3ff : (fmt == 1 && i == 0) ? 3 : 0x1ff;
      uint64_t addr = table + ((vaddr >> shift) & idx_mask) * (uint64_t)esize;
      uint64_t e;
      if (!guest_read(t, addr, esize, &e)) return 0;
      if (!(e & 1)) return 0;
      if (esize == 8 && (e & rsv_hi)) return 0;
      if (fmt == 1 && i == 0) { /* PAE PDPTE: present and an address, nothing else; no A bit set */
        table = e & ADDR_MASK;
        continue;
      }
      if (esize == 8 && !nxe && (e >> 63)) return 0;
      if (!(e & 2)) writable = 0;
      if (!(e & 4)) us = 0;
      if (!(e & 0x20)) return 0; /* the reference walker would set A */
      int ps = (e & 0x80) != 0;
      int last = i == levels - 1;
      if (fmt == 0 && ps && !last && (cr4 & CR4_PSE)) return 0; /* 4 MiB pages: TypeScript */
      int leaf_allowed = fmt == 0 ? 0 : (fmt == 2 ? i >= 1 : i >= 1);
      if (ps && !last && !leaf_allowed && fmt != 0) return 0; /* RSVD fault */
      int leaf = last || (ps && leaf_allowed);
      if (!leaf) {
        table = fmt == 0 ? (e & 0xfffff000ull) : (e & ADDR_MASK);
        continue;
      }
      if (!last) {
        uint64_t rsv_lo = shift == 21 ? 0x001fe000ull : 0x3fffe000ull;
        if (e & rsv_lo) return 0;
      }
      if (user && !us) return 0;
      if (write && !writable && (user || wp)) return 0;
      if (write && !(e & 0x40)) return 0; /* the reference walker would set D */
      dirty = (e & 0x40) != 0;
      uint64_t size = 1ull << shift;
      uint64_t base = fmt == 0 ? (e & 0xfffff000ull) : (e & ADDR_MASK);
      base &= ~(size - 1);
      gpa = base + (vaddr & (size - 1));
      writable = writable || (!user && !wp);
      goto walked;
    }
    return 0;
  }
walked:;
  uint64_t hpa = gpa;
  if (t->eptp) {
    int ew, ed;
    if (!ept_translate(t, gpa & ~0xfffull, write, &hpa, &ew, &ed)) return 0;
    writable = writable && ew;
    dirty = dirty && ed;
  }
  uint64_t off;
  if (!ram_offset(t, hpa & ~0xfffull, 4096, &off)) return 0;
  if (write && !writable) return 0;
  /* A page holding translated code: a store must reach TypeScript, which drops the code
     (Unicorn 2.1 notices only the first store into such a page; host-cpu.ts noteCodeWrite). */
  int code = t->code_map && ((t->code_map[off >> 15] >> ((off >> 12) & 7)) & 1);
  if (code && write) return 0;
  uint32_t perms = PROT_READ;
  if (writable && (write || dirty) && !code) perms |= PROT_WRITE;
  out[0] = hpa;
  out[1] = perms;
  return 1;
}

/* out = { CR0, CR3, CR4, EFER, CS selector } of the engine, as fm_paging_state (fmcpu.c) reads them. */
int fm_paging_state(void *uc, uint64_t *out);
int fm_tlb_paging_state(void *uc, const fm_tlb *t, uint64_t *out) {
  if (t->cs_at) {
    const uint8_t *env = *(uint8_t *const *)((const uint8_t *)uc + t->cpu_field) + t->env_offset;
    uint32_t cs;
    memcpy(&out[0], env + t->cr_at, 8);
    memcpy(&out[1], env + t->cr_at + 24, 8);
    memcpy(&out[2], env + t->cr_at + 32, 8);
    memcpy(&out[3], env + t->efer_at, 8);
    memcpy(&cs, env + t->cs_at, 4);
    out[4] = cs & 0xffff;
    return 0;
  }
  return fm_paging_state(uc, out); /* the offsets were not found: five uc_reg_read calls */
}

/* Where env's registers are (all offsets 0: read them with uc_reg_read). */
void fm_tlb_set_env(fm_tlb *t, uint32_t cpu_field, uint32_t env_offset, uint32_t cr_at, uint32_t efer_at, uint32_t cs_at) {
  t->cpu_field = cpu_field;
  t->env_offset = env_offset;
  t->cr_at = cr_at;
  t->efer_at = efer_at;
  t->cs_at = cs_at;
}

static bool fill(void *uc, uint64_t vaddr, int type, uc_tlb_entry *entry, void *user) {
  fm_tlb *t = (fm_tlb *)user;
  if (t->enabled && (type == MEM_READ || type == MEM_WRITE)) {
    uint64_t st[5], out[2];
    if (fm_tlb_paging_state(uc, t, st) == 0 && fm_tlb_walk(t, st[0], st[1], st[2], st[3], st[4], vaddr, type, out)) {
      entry->paddr = out[0];
      entry->perms = (uint32_t)out[1];
      t->fast++;
      return true;
    }
  }
  t->slow++;
  return t->js(uc, vaddr, type, entry, user);
}

/* Where host RAM is (the same bytes the engine maps; PhysicalMemory.ram). */
void fm_tlb_attach_ram(fm_tlb *t, uint8_t *ram) { t->ram = ram; }

/* The code-page bitmap the host CPU keeps (NULL: no page holds code). */
void fm_tlb_attach_code_map(fm_tlb *t, uint8_t *map) { t->code_map = map; }

/* Installs the native fill on an engine; `js` answers what it cannot. */
int fm_tlb_install(void *uc, uint64_t *hh, fm_tlb *t, uint8_t *ram, tlb_cb js) {
  if (!p_hook_add) return -1;
  t->ram = ram;
  t->js = js;
  return p_hook_add(uc, hh, HOOK_TLB_FILL, (void *)fill, t, 1, 0);
}
