/* key=value command line parsing. */
#include "guest.h"

bool cmdline_get(const char *cmdline, const char *key, const char **val, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen > klen && tok[klen] == '=' && strncmp(tok, key, klen) == 0) {
            *val = tok + klen + 1;
            *len = tlen - klen - 1;
            return true;
        }
    }
    return false;
}

int cmdline_get_u32(const char *cmdline, const char *key, uint32_t dflt, uint32_t *out)
{
    const char *v;
    size_t n;
    *out = dflt;
    if (!cmdline_get(cmdline, key, &v, &n))
        return 0;
    if (n == 0)
        return -1;
    uint64_t acc = 0;
    uint32_t radix = 10;
    size_t i = 0;
    if (n > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        radix = 16;
        i = 2;
    }
    for (; i < n; i++) {
        char c = v[i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
        else if (radix == 16 && c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
        else if (radix == 16 && c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
        else return -1;
        acc = acc * radix + d;
        if (acc > 0xFFFFFFFFu)
            return -1;
    }
    *out = (uint32_t)acc;
    return 1;
}
