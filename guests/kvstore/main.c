/*
 * kvstore: a key-value store that appends every update to a journal in memory
 * and then applies it to an index, with a backup agent (docs/functions.md,
 * "Backup"). It declares the backup profile "kvstore" with the AGENT_REGISTER
 * hypercall (24) and polls its agent mailbox: on "quiesce" it finishes the
 * update in progress, acknowledges (AGENT_ACK, 25: the host holds the VM
 * there while it snapshots) and goes on after "thaw"; on "verify" (what a
 * restore test writes) it checks that the journal and the index agree, prints
 * the verdict and exits 0 (consistent) or 1.
 *
 * Between the journal append and the index update it spends most of its time
 * (a delay that polls the mailbox), so a snapshot at a random moment usually
 * lands mid-update. Options: ops=N (stop after N updates, default: until the
 * journal is full), delay=N (loop iterations mid-update, default 2000). Needs the Firmament hypervisor (VMCALL).
 */
#include "x86_64.h"

#define HC_AGENT_REGISTER 24u
#define HC_AGENT_ACK 25u

#define AGENT_PHYS 0x300000ull
#define INDEX_PHYS 0x301000ull
#define JOURNAL_PHYS 0x400000ull
#define KEYS 64u
#define JOURNAL_MAX 40000u
#define AGENT_MAGIC 0x47414d46u /* "FMAG" */

enum { REQ_NONE = 0, REQ_QUIESCE = 1, REQ_THAW = 2, REQ_VERIFY = 3 };

struct agent {
    uint32_t magic;
    volatile uint32_t request;     /* host */
    volatile uint32_t request_seq; /* host */
    volatile uint32_t ack_seq;     /* guest */
    volatile uint32_t state;       /* guest: 0 running, 1 quiesced */
    volatile uint32_t verify;      /* guest: 1 consistent, 2 inconsistent */
    char profile[64];
};
struct record { uint64_t key, value, check; };
struct journal { volatile uint64_t count; struct record rec[JOURNAL_MAX]; };
struct index { volatile uint64_t applied; volatile uint64_t value[KEYS]; };

#define AG ((struct agent *)(uintptr_t)AGENT_PHYS)
#define IX ((struct index *)(uintptr_t)INDEX_PHYS)
#define JR ((struct journal *)(uintptr_t)JOURNAL_PHYS)
#define CHECK_MAGIC 0x6b7673746f7265ull

static uint32_t seen_seq;
static bool quiesce_pending;

static inline int64_t hypercall(uint64_t fn, uint64_t arg)
{
    uint64_t r;
    __asm__ volatile("vmcall" : "=a"(r) : "a"(fn), "b"(arg) : "memory");
    return (int64_t)r;
}

/* The journal and the index agree: every record applied, and each key's value is its last record's. */
static bool consistent(uint64_t *records)
{
    uint64_t n = JR->count, last[KEYS];
    *records = n;
    if (n > JOURNAL_MAX || IX->applied != n)
        return false;
    for (unsigned k = 0; k < KEYS; k++)
        last[k] = 0;
    for (uint64_t i = 0; i < n; i++) {
        const struct record *r = &JR->rec[i];
        if (r->key >= KEYS || r->check != (r->key ^ r->value ^ CHECK_MAGIC))
            return false;
        last[r->key] = r->value;
    }
    for (unsigned k = 0; k < KEYS; k++)
        if (IX->value[k] != last[k])
            return false;
    return true;
}

static void poll_agent(bool boundary);

static void quiesce(void)
{
    quiesce_pending = false;
    AG->state = 1;
    AG->ack_seq = seen_seq;
    hypercall(HC_AGENT_ACK, seen_seq); /* the host snapshots while the VM is held here */
    AG->state = 0;
    /* A VM restored from this snapshot comes back here: a "verify" its restorer wrote is checked
     * before any further update, against exactly the state that was saved. */
    poll_agent(false);
}

/* Looks at the mailbox; `boundary`: no update is half done, so a quiesce can be acknowledged now. */
static void poll_agent(bool boundary)
{
    uint32_t seq = AG->request_seq;
    if (seq != seen_seq) {
        seen_seq = seq;
        switch (AG->request) {
        case REQ_QUIESCE:
            quiesce_pending = true;
            break;
        case REQ_VERIFY: {
            uint64_t n;
            bool ok = consistent(&n);
            AG->verify = ok ? 1 : 2;
            if (ok)
                kprintf("kvstore: verify: journal and index agree (%llu records)\n", (unsigned long long)n);
            else
                kprintf("kvstore: verify: INCONSISTENT: journal has %llu records, index applied %llu\n", (unsigned long long)JR->count,
                        (unsigned long long)IX->applied);
            guest_exit(ok ? EXIT_OK : EXIT_CHECK_FAIL);
        }
        default:
            break;
        }
    }
    if (boundary && quiesce_pending)
        quiesce();
}

int guest_main(struct boot_info *bi)
{
    uint32_t ops = JOURNAL_MAX, delay = 2000;
    if (cmdline_get_u32(bi->cmdline, "ops", JOURNAL_MAX, &ops) < 0 || ops == 0 || ops > JOURNAL_MAX)
        guest_panic(EXIT_BAD_CONFIG, "kvstore: ops must be 1..%u", JOURNAL_MAX);
    if (cmdline_get_u32(bi->cmdline, "delay", 2000, &delay) < 0 || delay == 0)
        guest_panic(EXIT_BAD_CONFIG, "kvstore: delay must be >= 1");
    uint64_t ram_end = 0x100000ull + (uint64_t)bi->mem_upper * 1024;
    if (ram_end < JOURNAL_PHYS + sizeof(struct journal))
        guest_panic(EXIT_BAD_CONFIG, "kvstore: needs %llu KiB of RAM", (unsigned long long)((JOURNAL_PHYS + sizeof(struct journal)) >> 10));
    memset(AG, 0, sizeof *AG);
    memset(IX, 0, sizeof *IX);
    JR->count = 0;
    AG->magic = AGENT_MAGIC;
    memcpy(AG->profile, "kvstore", 8);
    hypercall(HC_AGENT_REGISTER, AGENT_PHYS);
    kprintf("kvstore: journal at 0x%llx, index at 0x%llx, agent mailbox at 0x%llx (profile kvstore)\n", (unsigned long long)JOURNAL_PHYS,
            (unsigned long long)INDEX_PHYS, (unsigned long long)AGENT_PHYS);
    for (uint32_t i = 0; i < ops; i++) {
        uint64_t key = (uint64_t)(i * 7u) % KEYS, value = (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
        uint64_t j = JR->count;
        JR->rec[j].key = key;
        JR->rec[j].value = value;
        JR->rec[j].check = key ^ value ^ CHECK_MAGIC;
        JR->count = j + 1;
        /* Mid-update: the journal has the record, the index not yet. */
        for (volatile unsigned d = 0; d < delay; d++)
            if ((d & 63) == 0)
                poll_agent(false);
        IX->value[key] = value;
        IX->applied = j + 1;
        poll_agent(true);
    }
    uint64_t n;
    bool ok = consistent(&n);
    kprintf("kvstore: %llu updates done, journal and index %s\n", (unsigned long long)n, ok ? "agree" : "DISAGREE");
    return ok ? EXIT_OK : EXIT_CHECK_FAIL;
}
