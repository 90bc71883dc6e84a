/*
 * Firmament POST: the C half of the firmware. Entered from entry.S in long
 * mode with the identity map, a stack at STACK_TOP and the IDT loaded.
 * Every step writes its POST code to port 0x80 and one deterministic log
 * line (no timing values) to the console.
 */
#include "fw.h"

#define FW_VERSION_STRING "Firmament firmware 0.1"

#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS  0x05

#define PIT_HZ_DIVISOR  11932   /* 1193182 Hz / 11932 = 100 Hz */
#define TIMER_TICKS     3
#define GUARD_COUNT     0x400000 /* LAPIC one-shot, divide 128 (~0.5 s on QEMU) */

static struct memmap map;
static struct memtest_result memtest;
static u32 cpu_count = 1;
static u64 ram_below, ram_above, ram_total;

static void print_map(void)
{
	for (u32 i = 0; i < map.count; i++) {
		const struct bootinfo_e820 *e = &map.e[i];
		kprintf("  e820: [mem 0x%016lx-0x%016lx] %s\n", e->base, e->base + e->length - 1,
			e820_type_name(e->type));
	}
}

static void step_console(void)
{
	struct uart_probe_result uart = { 0 };
	console_init(&uart);
	kprintf(FW_VERSION_STRING "\n");
	/* The first codes were emitted before any console existed: log them now. */
	post_log(POST_RESET_ENTERED, "reset vector entered (real mode), A20 enabled");
	post_log(POST_PROTECTED_MODE, "protected mode, flat 32-bit GDT");
	post_log(POST_LONG_MODE, "long mode, 0-4 GiB identity mapped with 2 MiB pages");
	post_log(POST_C_ENTRY, "C entry, IDT with 256 vectors at 0x%x", IDT_ADDR);
	if (!uart.ok) {
		u64 d[4] = { uart.failed_test, uart.value, 0, 0 };
		post_error(POST_UART_DEAD, d, "UART dead: COM1 %s test failed (read 0x%x), log continues on debugcon 0xE9",
			   uart.failed_test == 1 ? "scratch register" : "MCR loopback", uart.value);
	}
	if (console_kind() == BOOTINFO_CONSOLE_COM1)
		post_progress(POST_CONSOLE_READY, "console: COM1 16550 at 0x3f8, 115200 8N1");
	else
		post_progress(POST_CONSOLE_READY, "console: debugcon port 0xE9");
}

static void step_pic(void)
{
	pic_init();
	lapic_init();
	if (lapic_base())
		post_progress(POST_PIC_INIT, "PIC: 8259A pair at vectors 0x20/0x28, all IRQs masked; "
			      "local APIC at 0x%lx enabled, LINT0 ExtINT", lapic_base());
	else
		post_progress(POST_PIC_INIT, "PIC: 8259A pair at vectors 0x20/0x28, all IRQs masked; no local APIC");
}

static void step_fwcfg(void)
{
	u32 sig;
	if (fwcfg_probe(&sig)) {
		post_progress(POST_FWCFG_PROBE, "fw_cfg: signature QEMU at ports 0x510/0x511, %s",
			      fwcfg_has_dma() ? "DMA interface present" : "no DMA interface");
	} else {
		u64 d[4] = { sig, 0, 0, 0 };
		post_error(POST_FWCFG_MISSING, d, "fw_cfg missing: signature read 0x%08x, continuing without it", sig);
	}
}

static void step_cpu(void)
{
	u32 a, b, c, d;
	char vendor[13];
	cpuid(0, 0, &a, &b, &c, &d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	vendor[12] = 0;
	cpuid(1, 0, &a, &b, &c, &d);
	u32 stepping = a & 0xf, model = (a >> 4) & 0xf, family = (a >> 8) & 0xf;
	if (family == 0xf)
		family += (a >> 20) & 0xff;
	if (family == 0x6 || family >= 0xf)
		model |= ((a >> 16) & 0xf) << 4;
	const char *src = "default, no fw_cfg";
	if (fwcfg_present()) {
		u16 n = 0;
		fwcfg_read_key(FW_CFG_NB_CPUS, &n, 2);
		if (n) {
			cpu_count = n;
			src = "fw_cfg NB_CPUS";
		}
	}
	post_progress(POST_CPU_DETECT, "cpu: %s family %u model %u stepping %u, %u CPU%s (%s)",
		      vendor, family, model, stepping, cpu_count, cpu_count == 1 ? "" : "s", src);
}

static void step_memory_sizing(void)
{
	u64 ext1 = ((u64)cmos_read(0x31) << 8 | cmos_read(0x30)) << 10;          /* KiB above 1 MiB */
	u64 ext2 = ((u64)cmos_read(0x35) << 8 | cmos_read(0x34)) << 16;          /* 64 KiB units above 16 MiB */
	ram_above = ((u64)cmos_read(0x5d) << 16 | (u64)cmos_read(0x5c) << 8 | cmos_read(0x5b)) << 16;
	ram_below = ext2 ? (16ull << 20) + ext2 : (1ull << 20) + ext1;
	ram_total = ram_below + ram_above;
	post_code(POST_MEMORY_SIZING);
	kprintf("[POST 0x%02X] memory sizing: ", POST_MEMORY_SIZING);
	print_size(ram_total);
	kprintf(" (CMOS: ");
	print_size(ext1);
	kprintf(" above 1 MiB, ");
	print_size(ext2);
	kprintf(" above 16 MiB, ");
	print_size(ram_above);
	kprintf(" above 4 GiB)\n");
	if (fwcfg_present()) {
		u64 fw = 0;
		fwcfg_read_key(FW_CFG_RAM_SIZE, &fw, 8);
		if (fw == ram_total) {
			kprintf("  fw_cfg RAM_SIZE agrees: ");
			print_size(fw);
			kprintf("\n");
		} else {
			u64 d[4] = { ram_total, fw, 0, 0 };
			post_error(POST_MEMORY_SIZE_MISMATCH, d,
				   "memory size mismatch: CMOS 0x%lx bytes, fw_cfg RAM_SIZE 0x%lx bytes, using CMOS",
				   ram_total, fw);
		}
	}
}

static void step_memory_map(void)
{
	memmap_init(&map);
	memmap_set(&map, FW_RESERVED_BASE, FW_RESERVED_END - FW_RESERVED_BASE, E820_RESERVED);
	memmap_set(&map, FW_RESERVED_END, LOW_RAM_END - FW_RESERVED_END, E820_USABLE);
	memmap_set(&map, LOW_RAM_END, HIGH_RAM_BASE - LOW_RAM_END, E820_RESERVED);
	if (ram_below > HIGH_RAM_BASE)
		memmap_set(&map, HIGH_RAM_BASE, ram_below - HIGH_RAM_BASE, E820_USABLE);
	if (ram_above)
		memmap_set(&map, 0x100000000ull, ram_above, E820_USABLE);
	if (lapic_base())
		memmap_set(&map, lapic_base(), 0x1000, E820_RESERVED);
	memmap_set(&map, ROM_HIGH_BASE, ROM_SIZE, E820_RESERVED);
	post_progress(POST_MEMORY_MAP, "memory map: %u entries", map.count);
	print_map();
}

static void step_memtest(void)
{
	u64 limit = ram_below < MEMTEST_LIMIT ? ram_below : MEMTEST_LIMIT;
	post_progress(POST_MEMTEST_START, "memory test: [mem 0x%016lx-0x%016lx], address-in-address and inverted",
		      (u64)HIGH_RAM_BASE, limit - 1);
	struct bootinfo_e820 snapshot[BOOTINFO_MAX_E820];
	u32 n = map.count;
	memcpy(snapshot, map.e, sizeof(snapshot));
	for (u32 i = 0; i < n; i++) {
		if (snapshot[i].type != E820_USABLE)
			continue;
		u64 b = snapshot[i].base, e = b + snapshot[i].length;
		if (b < HIGH_RAM_BASE)
			b = HIGH_RAM_BASE;
		if (e > limit)
			e = limit;
		if (b < e)
			memtest_run(b, e, &memtest);
	}
	if (memtest.count == 0) {
		post_progress(POST_MEMTEST_PASS, "memory test passed");
		return;
	}
	for (u32 i = 0; i < memtest.count; i++) {
		const struct memtest_range *r = &memtest.r[i];
		u64 d[4] = { r->base, r->end - r->base, r->first_bad, r->expected ^ r->actual };
		post_error(POST_MEMTEST_FAIL, d,
			   "memory test FAILED: bad range [mem 0x%016lx-0x%016lx], first bad 0x%lx expected 0x%016lx actual 0x%016lx",
			   r->base, r->end - 1, r->first_bad, r->expected, r->actual);
		memmap_set(&map, r->base, r->end - r->base, E820_BAD);
	}
	kprintf("  %u bad range%s%s marked unusable (e820 type 5), continuing; memory map now %u entries:\n",
		memtest.count, memtest.count == 1 ? "" : "s", memtest.overflow ? " (range table full, widened)" : "",
		map.count);
	print_map();
}

static u16 pit_read(void)
{
	outb(0x43, 0x00);               /* latch channel 0 */
	u8 lo = inb(0x40);
	u8 hi = inb(0x40);
	return (u16)(hi << 8 | lo);
}

static bool step_pit(void)
{
	outb(0x43, 0x34);               /* channel 0, lo/hi, mode 2, binary */
	outb(0x40, PIT_HZ_DIVISOR & 0xff);
	outb(0x40, PIT_HZ_DIVISOR >> 8);
	u16 first = pit_read();
	for (u32 i = 0; i < 64; i++) {
		for (u32 j = 0; j < 256; j++)
			(void)inb(0x61);
		if (pit_read() != first) {
			post_progress(POST_PIT_CHECK, "PIT: channel 0 counting (mode 2, divisor %u, 100 Hz)",
				      PIT_HZ_DIVISOR);
			return true;
		}
	}
	u64 d[4] = { first, 0, 0, 0 };
	post_error(POST_PIT_STUCK, d, "PIT stuck: channel 0 counter stays at 0x%04x, skipping timer interrupt test",
		   first);
	return false;
}

static void step_timer_irq(void)
{
	timer_ticks = 0;
	guard_fired = 0;
	pic_unmask_irq(0);
	if (lapic_base()) {
		lapic_guard_arm(GUARD_COUNT);
		for (u32 i = 0; i < 1000 && timer_ticks < TIMER_TICKS && !guard_fired; i++)
			__asm__ volatile("sti; hlt; cli" ::: "memory");
		lapic_guard_disarm();
	} else {
		for (u32 i = 0; i < 50000000 && timer_ticks < TIMER_TICKS; i++)
			__asm__ volatile("sti; nop; cli" ::: "memory");
	}
	pic_mask_all();
	u32 got = timer_ticks;
	if (got >= TIMER_TICKS) {
		post_progress(POST_TIMER_IRQ_CHECK, "timer interrupt: %u IRQ0 ticks received on vector 0x20", TIMER_TICKS);
	} else {
		u64 d[4] = { got, TIMER_TICKS, 0, 0 };
		post_error(POST_TIMER_IRQ_TIMEOUT, d, "timer interrupt timeout: %u of %u IRQ0 ticks before the %s",
			   got, TIMER_TICKS, lapic_base() ? "LAPIC guard timer expired" : "wait loop ended");
	}
}

static void step_cmos(void)
{
	u16 sum = 0;
	for (u8 r = 0x10; r <= 0x2d; r++)
		sum = (u16)(sum + cmos_read(r));
	u16 stored = (u16)(cmos_read(0x2e) << 8 | cmos_read(0x2f));
	if (sum == stored) {
		post_progress(POST_CMOS_CHECK, "CMOS: checksum ok (0x%04x)", sum);
	} else {
		u64 d[4] = { stored, sum, 0, 0 };
		post_error(POST_CMOS_CHECKSUM_BAD, d, "CMOS checksum bad: stored 0x%04x computed 0x%04x, using defaults",
			   stored, sum);
	}
}

static u32 block_checksum(const u8 *p, u32 n)
{
	u32 s = 0;
	for (u32 i = 0; i < n; i++)
		s += p[i];
	return s;
}

static struct bootinfo *build_bootinfo(const struct next_stage *ns)
{
	struct bootinfo *bi = (struct bootinfo *)(uintptr_t)BOOTINFO_ADDR;
	u32 nerr, dropped;
	const struct bootinfo_error *errs = post_errors(&nerr, &dropped);
	u64 e820_addr = BOOTINFO_ADDR + sizeof(*bi);
	u64 err_addr = e820_addr + map.count * sizeof(struct bootinfo_e820);
	u32 total = (u32)(err_addr + nerr * sizeof(struct bootinfo_error) - BOOTINFO_ADDR);

	memset(bi, 0, BOOTINFO_MAX_SIZE);
	bi->magic = BOOTINFO_MAGIC;
	bi->version = BOOTINFO_VERSION;
	bi->header_size = sizeof(*bi);
	bi->total_size = total;
	bi->ram_size = ram_total;
	bi->ram_top_below_4g = ram_below;
	bi->ram_above_4g = ram_above;
	bi->cpu_count = cpu_count;
	bi->post_flags = post_flags();
	bi->console = console_kind();
	bi->e820_count = map.count;
	bi->e820_addr = e820_addr;
	bi->e820_entry_size = sizeof(struct bootinfo_e820);
	bi->error_count = nerr;
	bi->errors_addr = err_addr;
	bi->error_entry_size = sizeof(struct bootinfo_error);
	bi->errors_dropped = dropped;
	bi->next_stage_entry = ns->entry;
	bi->next_stage_start = ns->start;
	bi->next_stage_end = ns->end;
	memcpy((void *)(uintptr_t)e820_addr, map.e, map.count * sizeof(struct bootinfo_e820));
	memcpy((void *)(uintptr_t)err_addr, errs, nerr * sizeof(struct bootinfo_error));
	post_progress(POST_BOOTINFO_READY, "boot-info: v%u at 0x%x, %u bytes, %u e820 entries, %u POST error%s, POST flags 0x%x",
		      BOOTINFO_VERSION, BOOTINFO_ADDR, total, map.count, nerr, nerr == 1 ? "" : "s", bi->post_flags);
	return bi;
}

void fw_main(void)
{
	post_code(POST_C_ENTRY);
	step_console();
	step_pic();
	step_fwcfg();
	step_cpu();
	step_memory_sizing();
	step_memory_map();
	step_memtest();
	if (step_pit())
		step_timer_irq();
	step_cmos();

	struct next_stage ns;
	load_next_stage(&map, &ns);
	struct bootinfo *bi = build_bootinfo(&ns);
	post_progress(POST_HANDOFF, "handoff: jumping to 0x%lx in long mode, RDI = boot-info 0x%x, interrupts off",
		      ns.entry, BOOTINFO_ADDR);
	bi->last_post_code = post_last_code();
	bi->checksum = 0;
	bi->checksum = block_checksum((const u8 *)bi, bi->total_size);
	fw_handoff(ns.entry, BOOTINFO_ADDR);
}

void fw_next_stage_returned(u64 rax)
{
	u64 d[4] = { rax, 0, 0, 0 };
	console_force_com1();
	post_fatal(POST_NEXT_STAGE_RETURNED, d, "next stage returned to the firmware (RAX 0x%lx), halting", rax);
}
