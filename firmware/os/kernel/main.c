/*
 * Firmament lightweight OS: the firmware's next stage. Takes over the CPU
 * (GDT, TSS, IDT, its own page tables), verifies and runs the diagnostic
 * containers served in fw_cfg, then hands the machine off (report.c).
 */
#include "os.h"

const struct bootinfo *boot_info;
u64 boot_info_phys;
static struct bootinfo_e820 e820[BOOTINFO_MAX_E820];

NORETURN void os_exit(u8 value)
{
	__asm__ volatile("cli");
	console_drain();
	outb(0xf4, value);                   /* isa-debug-exit: QEMU exits with (value << 1) | 1 */
	halt_forever();
}

NORETURN void panic(const char *fmt, ...)
{
	va_list ap;
	kprintf("os: PANIC: ");
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
	os_exit(EXIT_PANIC);
}

static void print_size(u64 bytes)
{
	if (bytes && (bytes & 0xfffff) == 0)
		kprintf("%lu MiB", bytes >> 20);
	else
		kprintf("%lu KiB", bytes >> 10);
}

void kmain(u64 bi_phys);
void kmain(u64 bi_phys)
{
	if (bi_phys >= 0x40000000ul || ((const struct bootinfo *)phys_to_virt(bi_phys))->magic != BOOTINFO_MAGIC) {
		console_init(BOOTINFO_CONSOLE_COM1);
		panic("no boot-info block at 0x%lx", bi_phys);
	}
	const struct bootinfo *bi = phys_to_virt(bi_phys);
	boot_info = bi;
	boot_info_phys = bi_phys;
	console_init(bi->console);
	u32 sum = 0;
	for (u32 i = 0; i < bi->total_size && i < 0x10000; i++)
		sum += (i >= 0x0c && i < 0x10) ? 0 : ((const u8 *)bi)[i];
	if (bi->version != BOOTINFO_VERSION || bi->header_size < sizeof(*bi) ||
	    bi->e820_entry_size != sizeof(struct bootinfo_e820) || sum != bi->checksum ||
	    bi->e820_count > BOOTINFO_MAX_E820 || bi->e820_addr >= 0x40000000ul)
		panic("boot-info block at 0x%lx is invalid (version %u, checksum 0x%x vs 0x%x)", bi_phys, bi->version,
		      bi->checksum, sum);
	memcpy(e820, phys_to_virt(bi->e820_addr), bi->e820_count * sizeof(e820[0]));

	kprintf("firmament-os %s: boot-info v%u at 0x%lx, ", OS_VERSION, bi->version, bi_phys);
	print_size(bi->ram_size);
	kprintf(", %u e820 entries, POST flags 0x%x\n", bi->e820_count, bi->post_flags);

	cpu_init();
	mm_init(bi, e820, bi->e820_count);
	paging_init(bi->next_stage_start, bi->next_stage_end);
	kprintf("os: own page tables: image [mem 0x%lx-0x%lx] at 0x%lx (W^X), RAM 0-4 GiB at 0x%lx, user half empty\n",
		bi->next_stage_start, bi->next_stage_end - 1, KERNEL_VMA + bi->next_stage_start, PHYS_MAP);
	kprintf("os: GDT, TSS (IST: #DF, NMI, #MC), IDT 256 vectors, SYSCALL/SYSRET, %s\n",
		cpu_has_nx ? "NX" : "no NX");
	kprintf("os: frames: %lu free of %lu usable below 4 GiB (", frames_free_count(), frames_total());
	print_size(frames_free_count() << 12);
	kprintf(" free)\n");

	int bad = sha256_selftest();
	if (bad)
		panic("sha256 self-test: %d of %d known-answer vectors failed", bad, SHA256_SELFTEST_VECTORS);
	kprintf("os: sha256 self-test: %d known-answer vectors ok\n", SHA256_SELFTEST_VECTORS);

	timer_init();
	if (timer_uses_lapic())
		kprintf("os: timer: PIT stuck (POST 0xE3): LAPIC timer at %u Hz on vector 0x40, uncalibrated (1 GHz bus assumed)\n", TIMER_HZ);
	else
		kprintf("os: timer: PIT channel 0 at %u Hz on IRQ0 (container time limits)\n", TIMER_HZ);

	if (fwcfg_init())
		oci_run_all();
	else
		kprintf("oci: no fw_cfg device: no containers to run\n");
	report_and_handoff();
}
