/*
 * Host harness for firmware/os/kernel/json.c (test/os/json-host.test.ts).
 * Reads a document on stdin.
 *   json_host                -> "ok N" and one "type start end size" line per token, or "error"
 *   json_host K1 K2 ...      -> walks object keys / array indices (decimal) and prints
 *                               the string value, "u64 N" for numbers, "size N" for
 *                               containers, or "missing"
 */
#include <stdio.h>
#include <stdlib.h>
#include "os.h"

static char doc[1 << 16];
static struct jtok tok[1024];

int main(int argc, char **argv)
{
	u32 len = (u32)fread(doc, 1, sizeof(doc), stdin);
	int n = json_parse(doc, len, tok, 1024);
	if (n < 0) {
		printf("error\n");
		return 0;
	}
	if (argc == 1) {
		printf("ok %d\n", n);
		for (int i = 0; i < n; i++)
			printf("%u %u %u %u\n", tok[i].type, tok[i].start, tok[i].end, tok[i].size);
		return 0;
	}
	int cur = 0;
	for (int a = 1; a < argc && cur >= 0; a++) {
		char *end;
		unsigned long idx = strtoul(argv[a], &end, 10);
		if (*end == 0 && tok[cur].type == JSON_ARRAY)
			cur = json_index(tok, n, cur, (u32)idx);
		else
			cur = json_get(doc, tok, n, cur, argv[a]);
	}
	if (cur < 0) {
		printf("missing\n");
		return 0;
	}
	char s[256];
	u64 v;
	if (json_str(doc, tok, cur, s, sizeof(s)))
		printf("%s\n", s);
	else if (json_u64(doc, tok, cur, &v))
		printf("u64 %lu\n", v);
	else
		printf("size %u\n", tok[cur].size);
	return 0;
}
