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
