/*
 * Measured-boot event log: every verified blob (and index.json as read) is
 * recorded with its sha256 and extended into a PCR-style register:
 * pcr_0 = 32 zero bytes, pcr_i = sha256(pcr_{i-1} || digest_i).
 */
#include "os.h"

#define MAX_EVENTS 64

static struct handoff_event events[MAX_EVENTS];
static u32 nevents;
static u8 pcr[32];

u32 event_extend(u32 kind, u32 container, const u8 digest[32], u32 size, const char *desc)
{
	if (nevents == MAX_EVENTS)
		panic("event log full");
	struct handoff_event *e = &events[nevents];
	e->index = nevents;
	e->kind = kind;
	e->container = container;
	e->size = size;
	memcpy(e->digest, digest, 32);
	memset(e->description, 0, sizeof(e->description));
	u32 l = (u32)strlen(desc);
	if (l > sizeof(e->description) - 1)
		l = sizeof(e->description) - 1;
	memcpy(e->description, desc, l);
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, pcr, 32);
	sha256_update(&c, digest, 32);
	sha256_final(&c, pcr);
	return nevents++;
}

const u8 *event_pcr(void) { return pcr; }
u32 event_count(void) { return nevents; }
const struct handoff_event *event_table(void) { return events; }
