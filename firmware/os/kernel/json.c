/*
 * Minimal strict JSON tokenizer (jsmn-style: a flat token array, each
 * container token followed by its children in document order) and lookup
 * helpers for the OCI index, manifests and configs. Rejects anything
 * malformed: unbalanced brackets, trailing garbage, control characters in
 * strings, depth > 16. Escapes are validated; json_str() decodes \" \\ \/
 * \b \f \n \r \t and refuses \u (OCI documents here never need it).
 */
#include "os.h"

#define MAX_DEPTH 16

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

enum { S_VALUE_OR_END, S_VALUE, S_KEY_OR_END, S_KEY, S_COLON, S_COMMA_OR_END, S_DONE };

static bool scan_string(const char *s, u32 len, u32 *pi)
{
	u32 i = *pi;
	for (; i < len && s[i] != '"'; i++) {
		if ((u8)s[i] < 0x20)
			return false;
		if (s[i] == '\\') {
			if (++i >= len)
				return false;
			char e = s[i];
			if (e == 'u') {
				for (u32 k = 0; k < 4; k++) {
					char h = ++i < len ? s[i] : 0;
					if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
						return false;
				}
			} else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
				   e != 'r' && e != 't') {
				return false;
			}
		}
	}
	*pi = i;
	return i < len;
}

static bool primitive_ok(const char *s, u32 st, u32 en)
{
	if (en - st == 4 && !memcmp(s + st, "true", 4))
		return true;
	if (en - st == 5 && !memcmp(s + st, "false", 5))
		return true;
	if (en - st == 4 && !memcmp(s + st, "null", 4))
		return true;
	u32 k = st;
	if (k < en && s[k] == '-')
		k++;
	if (k == en || s[k] < '0' || s[k] > '9')
		return false;
	for (; k < en; k++) {
		char d = s[k];
		if (!((d >= '0' && d <= '9') || d == '.' || d == 'e' || d == 'E' || d == '+' || d == '-'))
			return false;
	}
	return true;
}

int json_parse(const char *s, u32 len, struct jtok *t, u32 max)
{
	u8 st[MAX_DEPTH + 1];
	int stack[MAX_DEPTH + 1];
	u32 depth = 0, n = 0;
	st[0] = S_VALUE;
	stack[0] = -1;
	for (u32 i = 0; i < len; i++) {
		char c = s[i];
		if (is_ws(c))
			continue;
		u8 *state = &st[depth];
		int parent = stack[depth];
		if (*state == S_DONE)
			return -1;
		if (c == ':') {
			if (*state != S_COLON)
				return -1;
			*state = S_VALUE;
			continue;
		}
		if (c == ',') {
			if (*state != S_COMMA_OR_END)
				return -1;
			*state = t[parent].type == JSON_OBJECT ? S_KEY : S_VALUE;
			continue;
		}
		if (c == '}' || c == ']') {
			if (!depth)
				return -1;
			bool obj = t[parent].type == JSON_OBJECT;
			if ((c == '}') != obj)
				return -1;
			if (*state != S_COMMA_OR_END && *state != (obj ? S_KEY_OR_END : S_VALUE_OR_END))
				return -1;
			t[parent].end = i + 1;
			depth--;
			continue;
		}
		if (c == '"' && (*state == S_KEY_OR_END || *state == S_KEY)) {
			if (n == max)
				return -1;
			u32 start = ++i;
			if (!scan_string(s, len, &i))
				return -1;
			t[n] = (struct jtok){ JSON_STRING, start, i, 0 };
			n++;
			t[parent].size++;
			*state = S_COLON;
			continue;
		}
		/* a value */
		if (*state != S_VALUE && *state != S_VALUE_OR_END)
			return -1;
		if (n == max)
			return -1;
		if (parent >= 0 && t[parent].type == JSON_ARRAY)
			t[parent].size++;
		*state = depth ? S_COMMA_OR_END : S_DONE;
		if (c == '{' || c == '[') {
			if (depth == MAX_DEPTH)
				return -1;
			t[n] = (struct jtok){ c == '{' ? JSON_OBJECT : JSON_ARRAY, i, 0, 0 };
			depth++;
			stack[depth] = (int)n++;
			st[depth] = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
		} else if (c == '"') {
			u32 start = ++i;
			if (!scan_string(s, len, &i))
				return -1;
			t[n++] = (struct jtok){ JSON_STRING, start, i, 0 };
		} else {
			u32 start = i;
			while (i < len && !is_ws(s[i]) && s[i] != ',' && s[i] != ']' && s[i] != '}' && s[i] != ':')
				i++;
			if (!primitive_ok(s, start, i))
				return -1;
			t[n++] = (struct jtok){ JSON_PRIMITIVE, start, i, 0 };
			i--;
		}
	}
	if (depth || st[0] != S_DONE)
		return -1;
	return (int)n;
}

/* Index of the token after the whole subtree of token i. */
static int skip(const struct jtok *t, int n, int i)
{
	u32 end = t[i].end;
	int j = i + 1;
	while (j < n && t[j].start < end)
		j++;
	return j;
}

int json_get(const char *s, const struct jtok *t, int n, int obj, const char *key)
{
	if (obj < 0 || obj >= n || t[obj].type != JSON_OBJECT)
		return -1;
	int i = obj + 1;
	u32 klen = (u32)strlen(key);
	for (u32 m = 0; m < t[obj].size && i + 1 < n; m++) {
		const struct jtok *k = &t[i];
		if (k->type == JSON_STRING && k->end - k->start == klen && !memcmp(s + k->start, key, klen))
			return i + 1;
		i = skip(t, n, i + 1);
	}
	return -1;
}

int json_index(const struct jtok *t, int n, int arr, u32 idx)
{
	if (arr < 0 || arr >= n || t[arr].type != JSON_ARRAY || idx >= t[arr].size)
		return -1;
	int i = arr + 1;
	for (u32 m = 0; m < idx && i < n; m++)
		i = skip(t, n, i);
	return i < n ? i : -1;
}

bool json_eq(const char *s, const struct jtok *t, int i, const char *lit)
{
	if (i < 0 || t[i].type != JSON_STRING)
		return false;
	u32 l = (u32)strlen(lit);
	return t[i].end - t[i].start == l && !memcmp(s + t[i].start, lit, l);
}

bool json_str(const char *s, const struct jtok *t, int i, char *out, u32 max)
{
	if (i < 0 || t[i].type != JSON_STRING || !max)
		return false;
	u32 o = 0;
	for (u32 k = t[i].start; k < t[i].end; k++) {
		char c = s[k];
		if (c == '\\') {
			c = s[++k];
			switch (c) {
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': return false;
			default: break;
			}
		}
		if (o + 1 >= max)
			return false;
		out[o++] = c;
	}
	out[o] = 0;
	return true;
}

bool json_u64(const char *s, const struct jtok *t, int i, u64 *out)
{
	if (i < 0 || t[i].type != JSON_PRIMITIVE)
		return false;
	u64 v = 0;
	if (t[i].end == t[i].start)
		return false;
	for (u32 k = t[i].start; k < t[i].end; k++) {
		char c = s[k];
		if (c < '0' || c > '9' || v > (~0ul - 9) / 10)
			return false;
		v = v * 10 + (u64)(c - '0');
	}
	*out = v;
	return true;
}
