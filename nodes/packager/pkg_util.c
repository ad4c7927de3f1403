/* pkg_util.c — UUIDv7, PNG, zstd, key matching and package decoding for
 * the packager (see pkg_util.h). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zstd.h>

#include "engine/error.h"
#include "fb/package_fb.h"
#include "nodes/packager/pkg_util.h"

/* ---- UUIDv7 ------------------------------------------------------------ */

static int random_bytes(void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = getrandom(b, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return TLCM_EIO;
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

int tlcm_uuid7_next(tlcm_uuid7_t *g, uint64_t now_ns, char out[37])
{
	uint8_t r[10];
	int rc = random_bytes(r, sizeof r);
	if (rc)
		return rc;
	uint64_t ms = now_ns / 1000000u;
	if (ms > g->last_ms) {
		g->last_ms = ms;
		/* start the counter low with some randomness, leaving room
		 * to count within the millisecond (RFC 9562, 6.2 method 1) */
		g->counter = (uint16_t)(r[8] & 0x1ff);
	} else if (++g->counter > 0xfff) {
		/* counter exhausted, or the clock went back: borrow the next
		 * millisecond so ids stay increasing */
		g->last_ms++;
		g->counter = 0;
	}
	ms = g->last_ms;
	uint8_t u[16];
	for (int i = 0; i < 6; i++)
		u[i] = (uint8_t)(ms >> (40 - 8 * i));
	u[6] = (uint8_t)(0x70 | (g->counter >> 8));
	u[7] = (uint8_t)g->counter;
	u[8] = (uint8_t)(0x80 | (r[0] & 0x3f));
	memcpy(u + 9, r + 1, 7);
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[k++] = '-';
		out[k++] = hex[u[i] >> 4];
		out[k++] = hex[u[i] & 15];
	}
	out[k] = 0;
	return 0;
}

bool tlcm_uuid7_parse(const char *s, uint64_t *ms)
{
	uint64_t t = 0;
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0, nib = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			continue;
		}
		int v = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
			: s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
		if (v < 0)
			return false;
		if (nib < 12)
			t = t << 4 | (uint64_t)v;
		nib++;
	}
	if (s[14] != '7' || !strchr("89ab", s[19]))
		return false;
	if (ms)
		*ms = t;
	return true;
}

/* ---- PNG --------------------------------------------------------------- */

int tlcm_png_encode(const uint8_t *px, unsigned w, unsigned h, int ch,
		    uint8_t **png, size_t *len)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	img.width = w;
	img.height = h;
	img.format = ch == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
	*png = NULL;
	*len = 0;
	if (!w || !h || (ch != 1 && ch != 3))
		return TLCM_EINVAL;
	png_alloc_size_t size = 0;
	if (!png_image_write_to_memory(&img, NULL, &size, 0, px, 0, NULL))
		goto fail;
	uint8_t *buf = malloc(size);
	if (!buf) {
		png_image_free(&img);
		return TLCM_ENOMEM;
	}
	if (!png_image_write_to_memory(&img, buf, &size, 0, px, 0, NULL)) {
		free(buf);
		goto fail;
	}
	*png = buf;
	*len = size;
	return 0;
fail:
	png_image_free(&img);
	return TLCM_EIO;
}

/* ---- zstd -------------------------------------------------------------- */

int tlcm_zstd_compress(const void *in, size_t len, int level, void **out,
		       size_t *outlen)
{
	size_t cap = ZSTD_compressBound(len);
	void *buf = malloc(cap ? cap : 1);
	if (!buf)
		return TLCM_ENOMEM;
	size_t n = ZSTD_compress(buf, cap, in, len, level);
	if (ZSTD_isError(n)) {
		free(buf);
		return TLCM_EIO;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

int tlcm_zstd_decompress(const void *in, size_t len, size_t raw_size,
			 void **out)
{
	unsigned long long said = ZSTD_getFrameContentSize(in, len);
	if (said == ZSTD_CONTENTSIZE_ERROR || said != raw_size)
		return TLCM_EBADMSG;
	void *buf = malloc(raw_size ? raw_size : 1);
	if (!buf)
		return TLCM_ENOMEM;
	size_t n = ZSTD_decompress(buf, raw_size, in, len);
	if (ZSTD_isError(n) || n != raw_size) {
		free(buf);
		return TLCM_EBADMSG;
	}
	*out = buf;
	return 0;
}

/* ---- sensitive keys ---------------------------------------------------- */

bool tlcm_key_sensitive(const char *key, size_t klen, const char *s)
{
	size_t sl = strlen(s);
	if (!sl || sl > klen)
		return false;
	for (size_t at = 0; at + sl <= klen; at++) {
		if (at && key[at - 1] != '.')
			continue;
		if (at + sl < klen && key[at + sl] != '.')
			continue;
		if (!strncasecmp(key + at, s, sl))
			return true;
	}
	return false;
}

/* ---- decoding ---------------------------------------------------------- */

void tlcm_pkg_items_free(tlcm_pkg_item_t *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++)
		free(items[i].data);
	free(items);
}

int tlcm_pkg_decode(const void *pkg, size_t len, tlcm_pkg_item_t **items,
		    size_t *n, char *why, size_t whylen)
{
	const char *vwhy;
	*items = NULL;
	*n = 0;
	if (tlcm_Package_verify_as_root(pkg, len, &vwhy))
		return tlcm_fail(why, whylen, TLCM_EBADMSG, "%s", vwhy);
	tlcm_Package_table_t p = tlcm_Package_as_root(pkg);
	if (!tlcm_uuid7_parse(tlcm_Package_id(p), NULL))
		return tlcm_fail(why, whylen, TLCM_EBADMSG, "id '%s' is not "
				 "a UUIDv7", tlcm_Package_id(p));
	const uint8_t *pl = tlcm_Package_payload(p);
	size_t plen = tlcm_Package_payload_len(p);
	uint64_t raw = tlcm_Package_raw_size(p);
	void *buf = NULL;
	switch (tlcm_Package_compression(p)) {
	case tlcm_Compression_None:
		if (raw != plen)
			return tlcm_fail(why, whylen, TLCM_EBADMSG, "raw_size "
					 "%llu, payload of %zu bytes",
					 (unsigned long long)raw, plen);
		buf = malloc(plen ? plen : 1);
		if (!buf)
			return TLCM_ENOMEM;
		if (plen)
			memcpy(buf, pl, plen);
		break;
	case tlcm_Compression_Zstd: {
		if (raw > (64u << 20))
			return tlcm_fail(why, whylen, TLCM_EBADMSG, "raw_size "
					 "%llu above 64 MiB",
					 (unsigned long long)raw);
		int rc = tlcm_zstd_decompress(pl, plen, (size_t)raw, &buf);
		if (rc == TLCM_EBADMSG)
			return tlcm_fail(why, whylen, rc, "payload does not "
					 "decompress to raw_size %llu bytes",
					 (unsigned long long)raw);
		if (rc)
			return rc;
		break;
	}
	default:
		return tlcm_fail(why, whylen, TLCM_EBADMSG, "unknown "
				 "compression %d", tlcm_Package_compression(p));
	}
	size_t count = tlcm_Package_count(p);
	tlcm_pkg_item_t *it = calloc(count ? count : 1, sizeof *it);
	int rc = it ? 0 : TLCM_ENOMEM;
	size_t at = 0, k = 0;
	const uint8_t *b = buf;
	while (!rc && at < raw) {
		uint32_t l;
		if (raw - at < 4 || (memcpy(&l, b + at, 4), raw - at - 4 < l)) {
			rc = tlcm_fail(why, whylen, TLCM_EBADMSG, "item %zu at "
				       "%zu runs past the payload", k, at);
			break;
		}
		if (k == count) {
			rc = tlcm_fail(why, whylen, TLCM_EBADMSG, "more items "
				       "than count %zu", count);
			break;
		}
		if (l < 8) {
			rc = tlcm_fail(why, whylen, TLCM_EBADMSG, "item %zu: "
				       "%u bytes is no FlatBuffer", k, l);
			break;
		}
		it[k].data = aligned_alloc(8, (l + 7) & ~(size_t)7);
		if (!it[k].data) {
			rc = TLCM_ENOMEM;
			break;
		}
		memcpy(it[k].data, b + at + 4, l);
		memcpy(it[k].type, b + at + 8, 4);
		it[k].type[4] = 0;
		it[k].len = l;
		k++;
		at += 4 + (size_t)l;
	}
	if (!rc && k != count)
		rc = tlcm_fail(why, whylen, TLCM_EBADMSG, "%zu items, count "
			       "says %zu", k, count);
	free(buf);
	if (rc) {
		tlcm_pkg_items_free(it, k);
		return rc;
	}
	*items = it;
	*n = k;
	return 0;
}
