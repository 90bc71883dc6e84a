#ifndef FW_TYPES_H
#define FW_TYPES_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdarg.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NORETURN __attribute__((noreturn))
#define PACKED __attribute__((packed))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

#define STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

#endif
