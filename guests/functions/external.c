/*
 * external: the body is "URL\nPAYLOAD". POSTs PAYLOAD to URL through the
 * function service (which parks this VM until the answer comes back on
 * /callbacks/{txid}), then answers "external said: ANSWER".
 */
#include "fn.h"

static uint8_t answer[4096];

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    size_t nl = 0;
    while (nl < len && body[nl] != '\n')
        nl++;
    if (nl == 0 || nl == len)
        return -1;
    long n = fn_external_call((const char *)body, nl, body + nl + 1, len - nl - 1, answer, sizeof answer);
    static const char prefix[] = "external said: ";
    size_t p = sizeof prefix - 1;
    if (n < 0) {
        static const char err[] = "external call failed";
        for (size_t i = 0; i < sizeof err - 1 && i < cap; i++)
            out[i] = (uint8_t)err[i];
        return -1;
    }
    if (p + (size_t)n > cap)
        return -1;
    for (size_t i = 0; i < p; i++)
        out[i] = (uint8_t)prefix[i];
    for (long i = 0; i < n; i++)
        out[p + (size_t)i] = answer[i];
    return (long)p + n;
}
