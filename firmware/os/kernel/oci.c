/*
 * Container images from fw_cfg (contract: tools/oci-layout.mjs,
 * layoutToFwCfgFiles): opt/fm/oci/index.json is the OCI image-layout index;
 * every blob is the file opt/fm/blob/<first 40 hex digits of its sha256>.
 *
 * For each manifest in the index (in index order): fetch and verify the
 * manifest, its config and its single layer (full sha256 and size against
 * the descriptor that names it), extend each verified digest into the event
 * log, read the grants from the config labels, find container.elf in the
 * layer tar and hand it to the runtime. Any failure rejects that container
 * only, with a finding saying why.
 */
#include "os.h"

#define MT_INDEX    "application/vnd.oci.image.index.v1+json"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG   "application/vnd.oci.image.config.v1+json"
#define MT_LAYER    "application/vnd.oci.image.layer.v1.tar"
#define REF_NAME    "org.opencontainers.image.ref.name"
#define MAX_BLOB    (16u << 20)
#define MAX_JSON    (64u << 10)
#define MAX_TOKENS  1024

struct blob {
	u64 phys;
	u32 pages;
	u32 size;
	const u8 *data;
};

struct desc {
	char name[32];
	char hex[65];
	u64 size;
	bool ok;
	char why[96];
};

static struct container ctab[MAX_CONTAINERS];
static struct jtok tok[MAX_TOKENS];
static const char *const kind_name[] = { "index", "manifest", "config", "layer" };

static bool parse_digest(const char *s, char hex[65])
{
	if (memcmp(s, "sha256:", 7) != 0)
		return false;
	for (u32 i = 0; i < 64; i++) {
		char c = s[7 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		hex[i] = c;
	}
	hex[64] = 0;
	return s[71] == 0;
}

static void hex_of(const u8 d[32], char out[65])
{
	static const char x[] = "0123456789abcdef";
	for (u32 i = 0; i < 32; i++) {
		out[2 * i] = x[d[i] >> 4];
		out[2 * i + 1] = x[d[i] & 15];
	}
	out[64] = 0;
}

static void bytes_of(const char hex[64], u8 out[32])
{
	for (u32 i = 0; i < 32; i++) {
		char a = hex[2 * i], b = hex[2 * i + 1];
		out[i] = (u8)(((a <= '9' ? a - '0' : a - 'a' + 10) << 4) | (b <= '9' ? b - '0' : b - 'a' + 10));
	}
}

static u64 be64(const u8 *p)
{
	u64 v = 0;
	for (u32 i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void blob_free(struct blob *b)
{
	if (b->pages)
		frame_free_contig(b->phys, b->pages);
	b->pages = 0;
}

static bool read_file(const char *name, u32 max, struct blob *b, u32 *size_out, bool *missing)
{
	u16 sel;
	u32 size;
	*missing = !fwcfg_find(name, &sel, &size);
	if (*missing)
		return false;
	*size_out = size;
	if (size > max)
		return false;
	b->size = size;
	b->pages = size ? (size + 4095) / 4096 : 1;
	b->phys = frame_alloc_contig(b->pages);
	if (!b->phys) {
		b->pages = 0;
		return false;
	}
	b->data = phys_to_virt(b->phys);
	if (size && !fwcfg_read(sel, (void *)b->data, size)) {
		blob_free(b);
		return false;
	}
	return true;
}

/* Fetch a blob named by a descriptor, verify size and sha256, measure it. */
static bool fetch_blob(struct container *c, const char hex[65], u64 want_size, u32 kind, struct blob *b)
{
	char name[56];
	memcpy(name, "opt/fm/blob/", 12);
	memcpy(name + 12, hex, 40);
	name[52] = 0;
	bool missing;
	u32 size = 0;
	memset(b, 0, sizeof(*b));
	u64 d[4] = { kind, 0, want_size, 0 };
	if (!read_file(name, MAX_BLOB, b, &size, &missing)) {
		d[1] = size;
		if (missing)
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, d,
				       "rejected: %s blob sha256:%s not in fw_cfg (%s)", kind_name[kind], hex, name);
		else
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, d,
				       "rejected: %s blob sha256:%s unreadable (%u bytes)", kind_name[kind], hex, size);
		return false;
	}
	if (size != want_size) {
		d[1] = size;
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, d,
			       "rejected: %s blob sha256:%s is %u bytes, descriptor says %lu", kind_name[kind], hex,
			       size, want_size);
		blob_free(b);
		return false;
	}
	u8 got[32], want[32];
	sha256(b->data, size, got);
	bytes_of(hex, want);
	if (memcmp(got, want, 32) != 0) {
		char gh[65];
		hex_of(got, gh);
		u64 dd[4] = { kind, size, be64(want), be64(got) };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_DIGEST_MISMATCH, dd,
			       "rejected: %s digest mismatch: expected sha256:%s got sha256:%s", kind_name[kind], hex, gh);
		blob_free(b);
		return false;
	}
	char desc[48];
	ksnprintf(desc, sizeof(desc), "%s %s", c->rec->name, kind_name[kind]);
	u32 ev = event_extend(kind, c->index, got, size, desc);
	if (!c->rec->event_count)
		c->rec->first_event = ev;
	c->rec->event_count++;
	return true;
}

static int parse_json(struct container *c, const struct blob *b, u32 kind)
{
	int n = json_parse((const char *)b->data, b->size, tok, MAX_TOKENS);
	if (n <= 0 || tok[0].type != JSON_OBJECT) {
		u64 d[4] = { kind, b->size, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, d, "rejected: %s is not a valid JSON object",
			       kind_name[kind]);
		return -1;
	}
	return n;
}

static bool get_desc(const char *s, int n, int obj, const char *media, char hex[65], u64 *size)
{
	char dg[80];
	return obj >= 0 && (!media || json_eq(s, tok, json_get(s, tok, n, obj, "mediaType"), media)) &&
	       json_str(s, tok, json_get(s, tok, n, obj, "digest"), dg, sizeof(dg)) && parse_digest(dg, hex) &&
	       json_u64(s, tok, json_get(s, tok, n, obj, "size"), size);
}

static bool parse_hex(const char *s, u32 *i, u32 *out)
{
	if (s[*i] != '0' || (s[*i + 1] != 'x' && s[*i + 1] != 'X'))
		return false;
	*i += 2;
	u32 v = 0, digits = 0;
	for (;;) {
		char ch = s[*i];
		u32 d;
		if (ch >= '0' && ch <= '9')
			d = (u32)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (u32)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			d = (u32)(ch - 'A' + 10);
		else
			break;
		v = v * 16 + d;
		(*i)++;
		if (++digits > 4)
			return false;
	}
	*out = v;
	return digits > 0;
}

/*
 * Ports no grant can cover: they would let a container escape the OS's
 * control (interrupt controllers and the PIT command port: mask or stop the
 * timer that enforces time limits; fw_cfg DMA and PCI configuration: DMA
 * into any physical memory; A20/reset and PCI reset control; isa-debug-exit).
 */
static const struct { u16 lo, hi; } forbidden_ports[] = {
	{ 0x20, 0x21 }, { 0xa0, 0xa1 }, { 0x43, 0x43 }, { 0x92, 0x92 }, { 0xf4, 0xf7 },
	{ 0x514, 0x51b }, { 0xcf8, 0xcff },
};

static bool port_forbidden(u32 lo, u32 hi)
{
	for (u32 i = 0; i < ARRAY_SIZE(forbidden_ports); i++)
		if (lo <= forbidden_ports[i].hi && hi >= forbidden_ports[i].lo)
			return true;
	return false;
}

/* "port:0x3f8-0x3ff,port:0x70-0x71,ram-test,fwcfg" -> grants. */
static bool parse_devices(struct container *c, const char *s, char *bad, u32 badsz)
{
	u32 i = 0;
	while (s[i]) {
		u32 st = i;
		while (s[i] && s[i] != ',')
			i++;
		u32 len = i - st;
		char item[48];
		if (len == 0 || len >= sizeof(item))
			goto fail;
		memcpy(item, s + st, len);
		item[len] = 0;
		if (!strcmp(item, "ram-test")) {
			c->grants |= GRANT_RAM_TEST;
		} else if (!strcmp(item, "fwcfg")) {
			c->grants |= GRANT_FWCFG;
			if (c->nports == MAX_PORT_GRANTS)
				goto fail;
			c->port_lo[c->nports] = 0x510;
			c->port_hi[c->nports] = 0x511;
			c->nports++;
		} else if (!memcmp(item, "port:", 5)) {
			u32 k = 5, lo, hi;
			if (!parse_hex(item, &k, &lo) || lo > 0xffff)
				goto fail;
			hi = lo;
			if (item[k] == '-') {
				k++;
				if (!parse_hex(item, &k, &hi) || hi > 0xffff || hi < lo)
					goto fail;
			}
			if (item[k] || c->nports == MAX_PORT_GRANTS)
				goto fail;
			if (port_forbidden(lo, hi))
				goto fail;
			c->grants |= GRANT_PORTS;
			c->port_lo[c->nports] = (u16)lo;
			c->port_hi[c->nports] = (u16)hi;
			c->nports++;
		} else {
			goto fail;
		}
		if (s[i] == ',')
			i++;
		continue;
fail:
		ksnprintf(bad, badsz, "%s", item);
		if (len >= sizeof(item))
			ksnprintf(bad, badsz, "(item too long)");
		return false;
	}
	return true;
}

static bool label_str(const char *s, int n, int labels, const char *key, char *out, u32 max)
{
	return json_str(s, tok, json_get(s, tok, n, labels, key), out, max);
}

static bool label_u64(const char *s, int n, int labels, const char *key, u64 *out)
{
	char buf[24];
	if (!label_str(s, n, labels, key, buf, sizeof(buf)) || !buf[0])
		return false;
	u64 v = 0;
	for (u32 i = 0; buf[i]; i++) {
		if (buf[i] < '0' || buf[i] > '9' || v > 100000000000ull)
			return false;
		v = v * 10 + (u64)(buf[i] - '0');
	}
	*out = v;
	return true;
}

static void config_fail(struct container *c, const char *why)
{
	report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_CONFIG_INVALID, NULL, "rejected: image config: %s", why);
}

static bool parse_config(struct container *c, const struct blob *b, const char layer_hex[65])
{
	int n = parse_json(c, b, EVENT_CONFIG);
	if (n < 0)
		return false;
	const char *s = (const char *)b->data;
	if (!json_eq(s, tok, json_get(s, tok, n, 0, "architecture"), "amd64") ||
	    !json_eq(s, tok, json_get(s, tok, n, 0, "os"), "firmament")) {
		config_fail(c, "architecture/os must be amd64/firmament");
		return false;
	}
	int cfg = json_get(s, tok, n, 0, "config");
	int ep = json_get(s, tok, n, cfg, "Entrypoint");
	if (ep < 0 || tok[ep].type != JSON_ARRAY || tok[ep].size != 1 ||
	    !json_eq(s, tok, json_index(tok, n, ep, 0), "/container.elf")) {
		config_fail(c, "Entrypoint must be [\"/container.elf\"]");
		return false;
	}
	int rootfs = json_get(s, tok, n, 0, "rootfs");
	int diff = json_get(s, tok, n, rootfs, "diff_ids");
	char dg[80], hex[65];
	if (!json_eq(s, tok, json_get(s, tok, n, rootfs, "type"), "layers") || diff < 0 ||
	    tok[diff].type != JSON_ARRAY || tok[diff].size != 1 ||
	    !json_str(s, tok, json_index(tok, n, diff, 0), dg, sizeof(dg)) || !parse_digest(dg, hex) ||
	    memcmp(hex, layer_hex, 64) != 0) {
		config_fail(c, "rootfs.diff_ids must be [the layer digest]");
		return false;
	}
	int labels = json_get(s, tok, n, cfg, "Labels");
	char name[40], devices[256];
	u64 mem, limit;
	if (labels < 0 || tok[labels].type != JSON_OBJECT) {
		config_fail(c, "no config.Labels");
		return false;
	}
	if (!label_str(s, n, labels, "org.firmament.name", name, sizeof(name)) || strcmp(name, c->rec->name) != 0) {
		config_fail(c, "label org.firmament.name does not match the index ref.name");
		return false;
	}
	if (!label_str(s, n, labels, "org.firmament.purpose", c->purpose, sizeof(c->purpose)))
		ksnprintf(c->purpose, sizeof(c->purpose), "(no purpose given)");
	if (!label_u64(s, n, labels, "org.firmament.memory", &mem) || mem < 0x10000 || mem > (256u << 20)) {
		config_fail(c, "label org.firmament.memory must be 65536..268435456 bytes");
		return false;
	}
	if (!label_u64(s, n, labels, "org.firmament.time-limit-ms", &limit) || limit < 1 || limit > 600000) {
		config_fail(c, "label org.firmament.time-limit-ms must be 1..600000");
		return false;
	}
	if (!label_str(s, n, labels, "org.firmament.devices", devices, sizeof(devices))) {
		config_fail(c, "label org.firmament.devices missing");
		return false;
	}
	char bad[64];
	if (!parse_devices(c, devices, bad, sizeof(bad))) {
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_CONFIG_INVALID, NULL,
			       "rejected: image config: device grant '%s' not allowed", bad);
		return false;
	}
	c->rec->memory_limit = (mem + 4095) & ~4095ull;
	c->rec->time_limit_ms = (u32)limit;
	c->rec->grants = c->grants;
	return true;
}

static u64 octal(const u8 *p, u32 n)
{
	u64 v = 0;
	u32 i = 0;
	while (i < n && p[i] == ' ')
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (u64)(p[i] - '0');
	return v;
}

/* Find the single regular file container.elf in an uncompressed ustar layer. */
static bool find_elf(struct container *c, const struct blob *b, const u8 **elf, u64 *size)
{
	u64 off = 0;
	u32 files = 0;
	*elf = NULL;
	while (off + 512 <= b->size) {
		const u8 *h = b->data + off;
		bool zero = true;
		for (u32 i = 0; i < 512 && zero; i++)
			zero = h[i] == 0;
		if (zero)
			break;
		u32 sum = 0;
		for (u32 i = 0; i < 512; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		u64 fsize = octal(h + 124, 12);
		if (sum != octal(h + 148, 8) || memcmp(h + 257, "ustar", 5) != 0) {
			u64 d[4] = { 1, off, 0, 0 };
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_IMAGE_INVALID, d,
				       "rejected: layer is not a valid ustar archive (header at offset %lu)", off);
			return false;
		}
		u8 type = h[156];
		char name[101];
		memcpy(name, h, 100);
		name[100] = 0;
		const char *nm = name[0] == '.' && name[1] == '/' ? name + 2 : name;
		if (type == '5') {
			/* directory entries are ignored */
		} else if ((type == '0' || type == 0) && !strcmp(nm, "container.elf") && h[345] == 0 &&
			   off + 512 + fsize <= b->size) {
			*elf = h + 512;
			*size = fsize;
			files++;
		} else {
			u64 d[4] = { 2, off, type, 0 };
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_IMAGE_INVALID, d,
				       "rejected: layer entry '%s' (type %c) is not allowed, only container.elf", name,
				       type ? type : '0');
			return false;
		}
		off += 512 + ((fsize + 511) & ~511ull);
	}
	if (files != 1) {
		u64 d[4] = { 3, files, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_IMAGE_INVALID, d,
			       "rejected: layer must hold exactly one container.elf (found %u)", files);
		return false;
	}
	return true;
}

static void run_container(struct container *c, const struct desc *d)
{
	struct blob man = { 0 }, cfg = { 0 }, layer = { 0 };
	char cfg_hex[65], layer_hex[65];
	u64 cfg_size, layer_size;
	const u8 *elf;
	u64 elf_size;

	kprintf("container %s: manifest sha256:%s\n", c->rec->name, d->hex);
	if (!d->ok) {
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, NULL, "rejected: index entry: %s", d->why);
		goto rejected;
	}
	if (!fetch_blob(c, d->hex, d->size, EVENT_MANIFEST, &man))
		goto rejected;
	{
		int n = parse_json(c, &man, EVENT_MANIFEST);
		if (n < 0)
			goto rejected;
		const char *s = (const char *)man.data;
		u64 sv;
		int mt = json_get(s, tok, n, 0, "mediaType");
		int layers = json_get(s, tok, n, 0, "layers");
		if (!json_u64(s, tok, json_get(s, tok, n, 0, "schemaVersion"), &sv) || sv != 2 ||
		    (mt >= 0 && !json_eq(s, tok, mt, MT_MANIFEST)) ||
		    !get_desc(s, n, json_get(s, tok, n, 0, "config"), MT_CONFIG, cfg_hex, &cfg_size) || layers < 0 ||
		    tok[layers].type != JSON_ARRAY || tok[layers].size != 1 ||
		    !get_desc(s, n, json_index(tok, n, layers, 0), MT_LAYER, layer_hex, &layer_size)) {
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BLOB_INVALID, NULL,
				       "rejected: manifest must be schemaVersion 2 with an OCI config and one uncompressed tar layer");
			goto rejected;
		}
	}
	if (!fetch_blob(c, cfg_hex, cfg_size, EVENT_CONFIG, &cfg))
		goto rejected;
	if (!parse_config(c, &cfg, layer_hex))
		goto rejected;
	if (!fetch_blob(c, layer_hex, layer_size, EVENT_LAYER, &layer))
		goto rejected;
	if (!find_elf(c, &layer, &elf, &elf_size))
		goto rejected;
	blob_free(&man);
	blob_free(&cfg);
	kprintf("container %s: verified (manifest, config, layer), %s; memory %lu KiB, time limit %u ms\n",
		c->rec->name, c->purpose, c->rec->memory_limit >> 10, c->rec->time_limit_ms);
	runtime_run(c, elf, elf_size);
	blob_free(&layer);
	return;
rejected:
	blob_free(&man);
	blob_free(&cfg);
	blob_free(&layer);
	c->rec->status = CSTATUS_REJECTED;
	c->rec->exit_code = -1;
}

static bool valid_name(const char *n)
{
	u32 l = (u32)strlen(n);
	if (!l || l > 31)
		return false;
	for (u32 i = 0; i < l; i++) {
		char ch = n[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

static struct desc descs[MAX_CONTAINERS];

void oci_run_all(void)
{
	struct blob idx = { 0 };
	bool missing;
	u32 size = 0;
	if (!read_file("opt/fm/oci/index.json", MAX_JSON, &idx, &size, &missing)) {
		kprintf("oci: %s\n", missing ? "no opt/fm/oci/index.json in fw_cfg: no containers to run"
					     : "opt/fm/oci/index.json unreadable or too large: no containers run");
		return;
	}
	u8 dig[32];
	char hex[65];
	sha256(idx.data, idx.size, dig);
	hex_of(dig, hex);
	event_extend(EVENT_INDEX, HANDOFF_NO_CONTAINER, dig, idx.size, "oci index.json");
	const char *s = (const char *)idx.data;
	int n = json_parse(s, idx.size, tok, MAX_TOKENS);
	u64 sv;
	int mt = n > 0 ? json_get(s, tok, n, 0, "mediaType") : -1;
	int mans = n > 0 ? json_get(s, tok, n, 0, "manifests") : -1;
	if (n <= 0 || tok[0].type != JSON_OBJECT || !json_u64(s, tok, json_get(s, tok, n, 0, "schemaVersion"), &sv) ||
	    sv != 2 || (mt >= 0 && !json_eq(s, tok, mt, MT_INDEX)) || mans < 0 || tok[mans].type != JSON_ARRAY) {
		kprintf("oci: index.json (%u bytes, sha256:%s) is not an OCI image index: no containers run\n", idx.size, hex);
		blob_free(&idx);
		return;
	}
	u32 count = tok[mans].size;
	kprintf("oci: index.json %u bytes, sha256:%s, %u manifest%s\n", idx.size, hex, count, count == 1 ? "" : "s");
	if (count > MAX_CONTAINERS) {
		kprintf("oci: only the first %u manifests are run\n", MAX_CONTAINERS);
		count = MAX_CONTAINERS;
	}
	for (u32 i = 0; i < count; i++) {
		struct desc *d = &descs[i];
		memset(d, 0, sizeof(*d));
		int m = json_index(tok, n, mans, i);
		int ann = json_get(s, tok, n, m, "annotations");
		if (!json_str(s, tok, json_get(s, tok, n, ann, REF_NAME), d->name, sizeof(d->name)) || !valid_name(d->name)) {
			ksnprintf(d->name, sizeof(d->name), "manifest-%u", i);
			ksnprintf(d->why, sizeof(d->why), "missing or invalid %s annotation", REF_NAME);
		} else if (!get_desc(s, n, m, MT_MANIFEST, d->hex, &d->size)) {
			ksnprintf(d->why, sizeof(d->why), "descriptor needs mediaType %s, a sha256 digest and a size", MT_MANIFEST);
		} else {
			d->ok = true;
		}
		if (!d->ok && !d->hex[0])
			memset(d->hex, '0', 64);
	}
	blob_free(&idx);

	for (u32 i = 0; i < count; i++) {
		struct container *c = &ctab[i];
		struct handoff_container *r = &containers_tab[i];
		memset(c, 0, sizeof(*c));
		memset(r, 0, sizeof(*r));
		c->rec = r;
		c->index = i;
		memcpy(r->name, descs[i].name, sizeof(r->name));
		bytes_of(descs[i].hex, r->manifest_digest);
		r->first_finding = finding_count;
		r->exit_code = -1;
		container_count = i + 1;
		run_container(c, &descs[i]);
		kprintf("container %s: %s\n", r->name, status_name(r->status));
	}
}
