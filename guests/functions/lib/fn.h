/*
 * What a function for the Firmament function service sees (docs/functions.md).
 * Write `long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)`:
 * the request body in, the response written to `out`, its length returned.
 * A negative return or more than `cap` bytes is an error response.
 */
#ifndef FN_H
#define FN_H

#include <stddef.h>
#include <stdint.h>

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap);

/*
 * Calls an external HTTP service: POST `body` to `url`. The function service
 * sends it with an X-Transaction-Id and a callback URL, parks this VM in the
 * snapshot store, and resumes it (possibly in another VM or process) when
 * the answer arrives at POST /callbacks/{txid}. Returns the answer's length
 * (copied into resp, at most cap bytes), -1 for bad arguments, -2 when the
 * service could not be reached, -status for a non-2xx answer.
 */
static inline long fn_external_call(const char *url, size_t url_len, const void *body, size_t body_len, void *resp, size_t cap)
{
    long r;
    register long r10 __asm__("r10") = (long)body_len;
    register long r8 __asm__("r8") = (long)resp;
    register long r9 __asm__("r9") = (long)cap;
    __asm__ volatile("int $0x80"
                     : "=a"(r)
                     : "a"(1L), "D"(url), "S"(url_len), "d"(body), "r"(r10), "r"(r8), "r"(r9)
                     : "memory", "rcx", "r11");
    return r;
}

static inline size_t fn_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

#endif
