/* gateway-hostile: guests/gateway built with its hostile part (guests/gateway/hostile.inc). */
#define GATEWAY_HOSTILE 1
#include "../gateway/main.c"
