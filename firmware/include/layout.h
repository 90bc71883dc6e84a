/*
 * Firmament firmware memory layout (physical addresses).
 * Shared by the assembly entry code, the C POST code and the linker script
 * (the linker script repeats the .data/.bss window; keep them in sync).
 * See docs/firmware.md for the full picture.
 */
#ifndef FW_LAYOUT_H
#define FW_LAYOUT_H

/* ROM: 128 KiB at 0xFFFE0000, aliased read-only at 0xE0000. The firmware
 * is linked to and runs from the alias so every address fits in 32 bits. */
#define ROM_SIZE            0x20000
#define ROM_HIGH_BASE       0xFFFE0000
#define ROM_ALIAS_BASE      0x000E0000

/* Firmware-used low RAM: 0x00000-0x1FFFF (reserved in the e820 map). */
#define FW_RESERVED_BASE    0x00000000
#define FW_RESERVED_END     0x00020000

#define PML4_ADDR           0x00001000
#define PDPT_ADDR           0x00002000
#define PD_ADDR             0x00003000  /* 4 PDs, 0x3000-0x6FFF */
#define PT_AREA_START       0x00001000
#define PT_AREA_END         0x00007000

#define IDT_ADDR            0x00007000  /* 256 x 16-byte gates */
#define IDT_SIZE            0x00001000

#define BOOTINFO_ADDR       0x00008000  /* boot-info block, up to 4 KiB */
#define BOOTINFO_MAX_SIZE   0x00001000

#define FW_DATA_START       0x00009000  /* .data + .bss window */
#define FW_DATA_END         0x00010000

#define STACK_BOTTOM        0x00010000  /* 64 KiB stack, grows down */
#define STACK_TOP           0x00020000

#define LOW_RAM_END         0x000A0000  /* 640 KiB base memory */
#define HIGH_RAM_BASE       0x00100000  /* 1 MiB */
#define MEMTEST_LIMIT       0x01000000  /* test up to 16 MiB */

#define LAPIC_DEFAULT_BASE  0xFEE00000

/* GDT selectors (GDT lives in ROM, descriptors pre-marked accessed). */
#define SEL_CODE32          0x08
#define SEL_DATA            0x10
#define SEL_CODE64          0x18

#endif
