/*
 * POST report and handoff: print the deterministic summary on the console,
 * build the handoff block (docs/handoff-abi.md) and execute VMCALL with
 * RAX = 'FIRM', RBX = its physical address. Without a hypervisor VMCALL
 * raises #UD, which cpu.c routes to handoff_no_hypervisor(): the OS stops
 * through isa-debug-exit (0 = all pass/fixed, 0x10 = any fail/timeout/rejected).
 */
#include "os.h"

#define MAX_MEMMAP 64

struct handoff_container containers_tab[MAX_CONTAINERS];
u32 container_count;
struct handoff_finding findings_tab[MAX_FINDINGS];
u32 finding_count, findings_dropped;
u32 post_flags_resolved;

static struct handoff_e820 memmap[MAX_MEMMAP];
static u8 block[0x10000] __attribute__((section(".bss.pagealigned.handoff"), aligned(4096)));
static bool any_failed;

const char *status_name(u32 status)
{
	switch (status) {
	case CSTATUS_PASS: return "pass";
	case CSTATUS_FAIL: return "fail";
	case CSTATUS_FIXED: return "fixed";
	case CSTATUS_REJECTED: return "rejected";
	case CSTATUS_TIMEOUT: return "timeout";
	default: return "not-run";
	}
}

static const char *type_name(u32 t)
{
	switch (t) {
	case HANDOFF_E820_USABLE: return "usable";
	case HANDOFF_E820_RESERVED: return "reserved";
	case HANDOFF_E820_BAD: return "bad (fenced)";
	case HANDOFF_E820_OS: return "os";
	default: return "other";
	}
}

NORETURN void handoff_no_hypervisor(void);
NORETURN void handoff_no_hypervisor(void)
{
	kprintf("handoff: no hypervisor, stopping\n");
	os_exit(any_failed ? EXIT_FAILURES : EXIT_OK);
}

static u64 place(u64 *off, const void *src, u64 bytes)
{
	u64 at = *off;
	memcpy(block + at, src, bytes);
	*off = at + ((bytes + 7) & ~7ull);
	return at;
}

NORETURN void report_and_handoff(void)
{
	u32 counts[6] = { 0 };
	kprintf("containers:");
	if (!container_count)
		kprintf(" none");
	for (u32 i = 0; i < container_count; i++) {
		u32 s = containers_tab[i].status;
		counts[s < 6 ? s : 0]++;
		kprintf("%s %s %s", i ? "," : "", containers_tab[i].name, status_name(s));
		if (s != CSTATUS_PASS && s != CSTATUS_FIXED)
			any_failed = true;
	}
	kprintf("\n");
	kprintf("post report: %u containers, %u pass, %u fixed, %u fail, %u timeout, %u rejected, %u findings\n",
		container_count, counts[CSTATUS_PASS], counts[CSTATUS_FIXED], counts[CSTATUS_FAIL], counts[CSTATUS_TIMEOUT],
		counts[CSTATUS_REJECTED], finding_count);
	if (boot_info->post_flags)
		kprintf("post report: firmware POST flags 0x%x, resolved by containers 0x%x\n", boot_info->post_flags,
			post_flags_resolved);

	u32 nev = event_count();
	const struct handoff_event *ev = event_table();
	kprintf("event log: %u events\n", nev);
	for (u32 i = 0; i < nev; i++) {
		kprintf("  event %u: sha256:", i);
		print_hex_bytes(ev[i].digest, 32);
		kprintf(" %s\n", ev[i].description);
	}
	kprintf("event log: pcr sha256:");
	print_hex_bytes(event_pcr(), 32);
	kprintf("\n");

	u32 nmap = mm_build_handoff_map(memmap, MAX_MEMMAP);
	kprintf("memory map: %u entries\n", nmap);
	for (u32 i = 0; i < nmap; i++)
		kprintf("  [mem 0x%016lx-0x%016lx] %s\n", memmap[i].base, memmap[i].base + memmap[i].length - 1,
			type_name(memmap[i].type));

	/* the block */
	struct handoff h;
	memset(&h, 0, sizeof(h));
	memset(block, 0, sizeof(block));
	u64 off = sizeof(h);
	u64 base = virt_to_phys(block);
	h.magic = HANDOFF_MAGIC;
	h.version = HANDOFF_VERSION;
	h.header_size = sizeof(h);
	h.bootinfo_addr = boot_info_phys;
	h.result = any_failed ? 1 : 0;
	h.syscall_abi_version = FM_SYSCALL_ABI_VERSION;
	h.memmap_addr = base + place(&off, memmap, (u64)nmap * sizeof(memmap[0]));
	h.memmap_count = nmap;
	h.memmap_entry_size = sizeof(struct handoff_e820);
	h.containers_addr = base + place(&off, containers_tab, (u64)container_count * sizeof(containers_tab[0]));
	h.container_count = container_count;
	h.container_entry_size = sizeof(struct handoff_container);
	h.findings_addr = base + place(&off, findings_tab, (u64)finding_count * sizeof(findings_tab[0]));
	h.finding_count = finding_count;
	h.finding_entry_size = sizeof(struct handoff_finding);
	h.events_addr = base + place(&off, ev, (u64)nev * sizeof(ev[0]));
	h.event_count = nev;
	h.event_entry_size = sizeof(struct handoff_event);
	memcpy(h.pcr, event_pcr(), 32);
	h.count_pass = counts[CSTATUS_PASS];
	h.count_fail = counts[CSTATUS_FAIL];
	h.count_fixed = counts[CSTATUS_FIXED];
	h.count_rejected = counts[CSTATUS_REJECTED];
	h.count_timeout = counts[CSTATUS_TIMEOUT];
	h.post_flags = boot_info->post_flags;
	h.post_flags_resolved = post_flags_resolved;
	h.findings_dropped = findings_dropped;
	extern const char _kernel_start[], _kernel_end[];
	h.os_start = virt_to_phys(_kernel_start);
	h.os_end = virt_to_phys(_kernel_end);
	h.os_cr3 = kernel_cr3();
	h.uptime_ms = timer_ms();
	h.total_size = (u32)off;
	memcpy(block, &h, sizeof(h));
	u32 sum = 0;
	for (u64 i = 0; i < off; i++)
		sum += block[i];
	((struct handoff *)block)->checksum = sum;

	kprintf("handoff: block v%u at 0x%lx, %u bytes, result %u; VMCALL RAX=0x%x RBX=0x%lx\n", HANDOFF_VERSION, base,
		h.total_size, h.result, HANDOFF_VMCALL_RAX, base);
	u64 r = handoff_vmcall(HANDOFF_VMCALL_RAX, base);
	kprintf("handoff: hypervisor returned 0x%lx, stopping\n", r);
	os_exit(any_failed ? EXIT_FAILURES : EXIT_OK);
}
