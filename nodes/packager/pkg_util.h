/* pkg_util.h — the packager's pieces that need no graph: UUIDv7 ids,
 * PNG encoding, zstd payloads, sensitive-key matching and the decoding of
 * a package (for tests, tools and the core's reference).
 *
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, 12 bits of
 * a counter that keeps ids from one generator strictly increasing within
 * a millisecond (and across a clock step back), variant 10, 62 random
 * bits from getrandom(2). Text: 36 lower-case characters. The generator
 * state belongs to its caller (one per packager node).
 */
#ifndef TLCM_PKG_UTIL_H
#define TLCM_PKG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tlcm_uuid7 {
	uint64_t last_ms;
	uint16_t counter; /* 12 bits used */
} tlcm_uuid7_t;

/* A new id as text (37 bytes with the NUL) for wall-clock now_ns. */
int tlcm_uuid7_next(tlcm_uuid7_t *g, uint64_t now_ns, char out[37]);
/* True when s is a UUIDv7 in lower-case text; *ms its timestamp. */
bool tlcm_uuid7_parse(const char *s, uint64_t *ms);

/* PNG of a w × h image with ch channels (1 gray, 3 RGB), rows packed;
 * *png malloc'd. */
int tlcm_png_encode(const uint8_t *px, unsigned w, unsigned h, int ch,
		    uint8_t **png, size_t *len);

/* zstd: *out malloc'd. */
int tlcm_zstd_compress(const void *in, size_t len, int level, void **out,
		       size_t *outlen);
/* Exactly raw_size bytes or TLCM_EBADMSG (a frame that says another
 * size, or corrupt). */
int tlcm_zstd_decompress(const void *in, size_t len, size_t raw_size,
			 void **out);

/* Does the dotted key path contain the sensitive name s as whole
 * components (case-insensitive)? "wifi.wifi_password" and
 * "wifi_password.primary" match "wifi_password"; "a.wifi.password.b"
 * matches "wifi.password"; "my_wifi_password" does not match. */
bool tlcm_key_sensitive(const char *key, size_t klen, const char *s);

/* One item of a decoded payload: the FlatBuffer copied to 8-byte aligned
 * memory, its file identifier in type. */
typedef struct tlcm_pkg_item {
	char type[5];
	void *data;
	size_t len;
} tlcm_pkg_item_t;

/* Verify a package, decompress its payload and split it into items
 * (*items malloc'd, each data too: tlcm_pkg_items_free). Checks what the
 * core checks (docs/api.md): the verifier, a UUIDv7 id, the compression,
 * raw_size, count, and that the items exactly fill the payload. why gets
 * the reason on TLCM_EBADMSG. */
int tlcm_pkg_decode(const void *pkg, size_t len, tlcm_pkg_item_t **items,
		    size_t *n, char *why, size_t whylen);
void tlcm_pkg_items_free(tlcm_pkg_item_t *items, size_t n);

#endif
