#ifndef FW_ELF64_H
#define FW_ELF64_H

#include "types.h"

#define EI_NIDENT   16
#define ELFCLASS64  2
#define ELFDATA2LSB 1
#define ET_EXEC     2
#define EM_X86_64   62
#define PT_LOAD     1
#define PF_X        1

struct elf64_ehdr {
	u8 e_ident[EI_NIDENT];
	u16 e_type;
	u16 e_machine;
	u32 e_version;
	u64 e_entry;
	u64 e_phoff;
	u64 e_shoff;
	u32 e_flags;
	u16 e_ehsize;
	u16 e_phentsize;
	u16 e_phnum;
	u16 e_shentsize;
	u16 e_shnum;
	u16 e_shstrndx;
} PACKED;

struct elf64_phdr {
	u32 p_type;
	u32 p_flags;
	u64 p_offset;
	u64 p_vaddr;
	u64 p_paddr;
	u64 p_filesz;
	u64 p_memsz;
	u64 p_align;
} PACKED;

STATIC_ASSERT(sizeof(struct elf64_ehdr) == 64, "ehdr");
STATIC_ASSERT(sizeof(struct elf64_phdr) == 56, "phdr");

#endif
