/*
 * gateway: an IoT gateway. Forwards framed messages between COM1 (the
 * field side) and COM2 (0x2F8, the uplink), with periodic timer work: a
 * telemetry frame on COM2 every 250 ms and a status line on COM1 every
 * second, all paced by the PIT at 100 Hz with the CPU in HLT in between.
 *
 * Frames are NMEA-style lines: '>' PAYLOAD '*' XX '\n', where XX is the XOR
 * of the payload bytes in hex and the payload is 1-64 printable bytes. A
 * valid frame is forwarded unchanged to the other port; anything else is
 * counted as bad and dropped.
 *
 * Command line: secs=N stops after N seconds of PIT time (default 0: runs
 * until the host stops it).
 *
 * guests/gateway-hostile builds this file with GATEWAY_HOSTILE: the same
 * gateway, which turns hostile at a time drawn from seed=N (2-5 s) and then
 * does one thing, behaviour=N (default seed % 5): 0 scans I/O ports, 1
 * probes MSRs, 2 executes freshly written code, 3 floods COM1, 4 dirties
 * memory fast, 5 (only when asked for) stops its telemetry frames. It announces the turn on COM1 ("gateway: hostile: ...") so
 * tests can measure how fast the anomaly detector reacts.
 */
#include "x86_64.h"

#define COM1 0x3F8
#define COM2 0x2F8
#define TICK_HZ 100u
#define POLL_TICKS 1u        /* poll the UARTs every tick (10 ms) */
#define TELEMETRY_TICKS 25u  /* 250 ms */
#define STATUS_TICKS 100u    /* 1 s */
#define MAX_PAYLOAD 64

struct link {
    uint16_t port;
    char buf[MAX_PAYLOAD + 8];
    uint32_t len;
    bool overflow;
};

static struct link field = { .port = COM1 }, uplink = { .port = COM2 };
static uint32_t fwd_up, fwd_down, bad, telemetry_seq;

static void uart_init(uint16_t base)
{
    outb(base + 1, 0x00); /* no interrupts: polled */
    outb(base + 3, 0x80); /* DLAB */
    outb(base + 0, 0x01); /* 115200 baud */
    outb(base + 1, 0x00);
    outb(base + 3, 0x03); /* 8N1 */
    outb(base + 2, 0xC7); /* FIFO on, cleared */
    outb(base + 4, 0x03); /* DTR, RTS */
}

static void uart_put(uint16_t base, char c)
{
    while (!(inb(base + 5) & 0x20))
        ;
    outb(base, (uint8_t)c);
}

static void uart_write(uint16_t base, const char *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        uart_put(base, s[i]);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* '>' payload '*' XX: the payload is valid when its XOR matches XX. */
static bool frame_valid(const char *f, uint32_t n)
{
    if (n < 5 || f[0] != '>' || f[n - 3] != '*')
        return false;
    int hi = hexval(f[n - 2]), lo = hexval(f[n - 1]);
    if (hi < 0 || lo < 0)
        return false;
    uint8_t x = 0;
    for (uint32_t i = 1; i < n - 3; i++) {
        if (f[i] < 0x20 || f[i] > 0x7E || f[i] == '*')
            return false;
        x ^= (uint8_t)f[i];
    }
    return x == (uint8_t)(hi * 16 + lo);
}

static void link_poll(struct link *from, struct link *to, uint32_t *forwarded)
{
    while (inb(from->port + 5) & 0x01) {
        char c = (char)inb(from->port);
        if (c == '\r')
            continue;
        if (c != '\n') {
            if (from->len < sizeof from->buf)
                from->buf[from->len++] = c;
            else
                from->overflow = true;
            continue;
        }
        if (!from->overflow && frame_valid(from->buf, from->len)) {
            uart_write(to->port, from->buf, from->len);
            uart_put(to->port, '\n');
            (*forwarded)++;
        } else {
            bad++;
        }
        from->len = 0;
        from->overflow = false;
    }
}

static void send_telemetry(uint64_t ticks)
{
    char f[MAX_PAYLOAD + 8];
    uint32_t n = 0;
    uint32_t vals[3] = { telemetry_seq++, (uint32_t)(ticks * (1000 / TICK_HZ)), fwd_up + fwd_down };
    const char *tag = ">TEL";
    while (*tag)
        f[n++] = *tag++;
    for (int k = 0; k < 3; k++) {
        char digits[12];
        int d = 0;
        uint32_t v = vals[k];
        do {
            digits[d++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        f[n++] = ',';
        while (d)
            f[n++] = digits[--d];
    }
    uint8_t x = 0;
    for (uint32_t i = 1; i < n; i++)
        x ^= (uint8_t)f[i];
    static const char hex[] = "0123456789ABCDEF";
    f[n++] = '*';
    f[n++] = hex[x >> 4];
    f[n++] = hex[x & 15];
    f[n++] = '\n';
    uart_write(COM2, f, n);
}

#ifdef GATEWAY_HOSTILE
#include "hostile.inc"
#endif

int guest_main(struct boot_info *bi)
{
    uint32_t secs;
    if (cmdline_get_u32(bi->cmdline, "secs", 0, &secs) < 0)
        guest_panic(EXIT_BAD_CONFIG, "gateway: secs= must be a number of seconds");
#ifdef GATEWAY_HOSTILE
    hostile_configure(bi->cmdline);
#endif
    uart_init(COM2);
    pic_init();
    pit_start(TICK_HZ, 0);
    kprintf("gateway: forwarding COM1 <-> COM2, telemetry every %u ms\n", TELEMETRY_TICKS * (1000 / TICK_HZ));
    uint64_t last = pit_ticks;
    cpu_cli();
    for (;;) {
        while (pit_ticks == last) {
            cpu_sti_hlt();
            cpu_cli();
        }
        last = pit_ticks;
        if (last % POLL_TICKS == 0) {
            link_poll(&field, &uplink, &fwd_up);
            link_poll(&uplink, &field, &fwd_down);
        }
#ifdef GATEWAY_HOSTILE
        if (last % TELEMETRY_TICKS == 0 && !hostile_muted())
#else
        if (last % TELEMETRY_TICKS == 0)
#endif
            send_telemetry(last);
        if (last % STATUS_TICKS == 0)
            kprintf("gateway: t=%us up %u down %u bad %u\n", (uint32_t)(last / TICK_HZ), fwd_up, fwd_down, bad);
#ifdef GATEWAY_HOSTILE
        hostile_tick(last);
#endif
        if (secs && last >= (uint64_t)secs * TICK_HZ)
            break;
    }
    pit_stop();
    kprintf("gateway: done, up %u down %u bad %u\n", fwd_up, fwd_down, bad);
    return EXIT_OK;
}
