/*
 * Host harness for firmware/os/kernel/sha256.c (test/os/host-units.test.ts),
 * built with -I firmware/os/include -I firmware/include against the kernel
 * source itself (the declarations come from os.h).
 *   sha256_host selftest        -> number of failed built-in vectors
 *   sha256_host CHUNK < data    -> hex digest, fed in CHUNK-byte updates
 */
#include <stdio.h>
#include <stdlib.h>
#include "os.h"

int main(int argc, char **argv)
{
	if (argc == 2 && argv[1][0] == 's') {
		printf("%d\n", sha256_selftest());
		return 0;
	}
	size_t chunk = argc > 1 ? (size_t)strtoul(argv[1], 0, 0) : 4096;
	if (!chunk)
		chunk = 1;
	static u8 buf[1 << 20];
	size_t n, fill = 0;
	struct sha256_ctx c;
	sha256_init(&c);
	while ((n = fread(buf + fill, 1, sizeof(buf) - fill, stdin)) > 0)
		fill += n;
	for (size_t off = 0; off < fill; off += chunk)
		sha256_update(&c, buf + off, fill - off < chunk ? fill - off : chunk);
	u8 out[32];
	sha256_final(&c, out);
	for (int i = 0; i < 32; i++)
		printf("%02x", out[i]);
	printf("\n");
	return 0;
}
