/* msgtext.c — text for people from messages: a printable message type and
 * JSON string escaping for describe() callbacks (see node.h). */
#include <stdio.h>
#include <string.h>

#include "engine/node.h"

void tlcm_msg_type_str(const tlcm_msg_t *m, char out[5])
{
	memcpy(out, m->type, 4);
	out[4] = 0;
	for (int i = 0; i < 4; i++)
		if (out[i] < 0x20 || out[i] > 0x7e)
			out[i] = '?';
}

bool tlcm_json_str(char *buf, size_t *at, size_t end, const char *s)
{
	size_t p = *at;
	if (p + 2 > end)
		return false;
	buf[p++] = '"';
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		int w = ch == '"' || ch == '\\' ? 2 : ch < 0x20 ? 6 : 1;
		if (p + (size_t)w + 1 > end)
			return false;
		if (w == 2) {
			buf[p++] = '\\';
			buf[p++] = (char)ch;
		} else if (w == 6) {
			p += (size_t)snprintf(buf + p, 7, "\\u%04x", ch);
		} else {
			buf[p++] = (char)ch;
		}
	}
	buf[p++] = '"';
	*at = p;
	return true;
}

bool tlcm_json_count(char *buf, size_t *at, size_t end, bool first,
		     const char *key, size_t count)
{
	size_t p = *at;
	char num[32];
	int nw = snprintf(num, sizeof num, ":%zu", count);
	if (!first) {
		if (p >= end)
			return false;
		buf[p++] = ',';
	}
	if (!tlcm_json_str(buf, &p, end, key) || p + (size_t)nw > end)
		return false;
	memcpy(buf + p, num, (size_t)nw);
	*at = p + (size_t)nw;
	return true;
}

int tlcm_expect_msg(tlcm_ctx_t *ctx, const tlcm_msg_t *m, uint64_t *bad,
		    const char *port, const char *name, const char ident[4],
		    int (*verify)(const void *, size_t, const char **))
{
	const char *why;
	if (memcmp(m->type, ident, 4)) {
		char t[5];
		tlcm_msg_type_str(m, t);
		return tlcm_bad_input(ctx, bad, "%s: expected %s %s (%.4s), got "
				      "a '%s' message", port,
				      strchr("AEIOU", name[0]) ? "an" : "a",
				      name, ident, t);
	}
	if (!tlcm_msg_verified(ctx, m) &&
	    verify(tlcm_msg_data(m), m->size, &why))
		return tlcm_bad_input(ctx, bad, "%s: invalid %s: %s", port, name,
				      why);
	return 0;
}
