/* idx.c — IDX reader: whole file through io_uring, gzip inflated in
 * memory, header validated before the data buffer is allocated (idx.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "engine/error.h"
#include "engine/io.h"
#include "nodes/capture/idx.h"

#define WHY(...) (why && cap ? (void)snprintf(why, cap, __VA_ARGS__) : (void)0)

size_t tlcm_idx_file_type_size(uint8_t type)
{
	switch (type) {
	case 0x08: case 0x09: return 1;
	case 0x0B: return 2;
	case 0x0C: case 0x0D: return 4;
	case 0x0E: return 8;
	default: return 0;
	}
}

void tlcm_idx_file_dims(const tlcm_idx_file_t *x, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = 0;
	if (x->ndims < 2) {
		snprintf(buf, cap, "1");
		return;
	}
	for (unsigned i = 1; i < x->ndims && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%u",
				      i > 1 ? "x" : "", (unsigned)x->dims[i]);
}

void tlcm_idx_file_free(tlcm_idx_file_t *x)
{
	free(x->data);
	memset(x, 0, sizeof *x);
}

/* Check the 4-byte magic; 0 or TLCM_EBADMSG with why. */
static int check_magic(const uint8_t *h, const char *name, char *why,
		       size_t cap)
{
	if (h[0] || h[1]) {
		WHY("%s: not an IDX file: it starts with bytes %02x %02x %02x "
		    "%02x, expected 00 00 TYPE NDIMS", name, h[0], h[1], h[2],
		    h[3]);
		return TLCM_EBADMSG;
	}
	if (!tlcm_idx_file_type_size(h[2])) {
		WHY("%s: unknown IDX element type 0x%02x (expected 0x08 "
		    "unsigned byte, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)", name,
		    h[2]);
		return TLCM_EBADMSG;
	}
	if (h[3] < 1 || h[3] > TLCM_IDX_MAX_DIMS) {
		WHY("%s: IDX header has %u dimensions, expected 1 to %d", name,
		    h[3], TLCM_IDX_MAX_DIMS);
		return TLCM_EBADMSG;
	}
	return 0;
}

/* Fill x's shape from a complete header h; *total = file bytes it
 * declares. */
static int read_dims(tlcm_idx_file_t *x, const uint8_t *h, uint64_t *total,
		     const char *name, char *why, size_t cap)
{
	x->type = h[2];
	x->ndims = h[3];
	uint64_t items = 1;
	for (unsigned i = 0; i < x->ndims; i++) {
		const uint8_t *d = h + 4 + 4 * i;
		x->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
			     (uint32_t)d[2] << 8 | d[3];
		if (i)
			items *= x->dims[i] ? x->dims[i] : 1;
		if (i && !x->dims[i]) {
			WHY("%s: dimension %u is 0", name, i);
			return TLCM_EBADMSG;
		}
		if (items > TLCM_IDX_MAX_DATA)
			break;
	}
	uint64_t item = items * tlcm_idx_file_type_size(x->type);
	uint64_t hdr = 4 + 4 * (uint64_t)x->ndims;
	if (items > TLCM_IDX_MAX_DATA ||
	    (uint64_t)x->dims[0] * item > TLCM_IDX_MAX_DATA - hdr) {
		WHY("%s: the header declares more than %llu bytes of data",
		    name, (unsigned long long)TLCM_IDX_MAX_DATA);
		return TLCM_ETOOBIG;
	}
	x->count = x->dims[0];
	x->item_size = (size_t)item;
	*total = hdr + (uint64_t)x->dims[0] * item;
	return 0;
}

static void describe_shape(const tlcm_idx_file_t *x, uint64_t total, char *buf,
			   size_t cap)
{
	char dims[64];
	tlcm_idx_file_dims(x, dims, sizeof dims);
	snprintf(buf, cap, "%zu items%s%s (%llu bytes with the header)",
		 x->count, x->ndims > 1 ? " of " : "",
		 x->ndims > 1 ? dims : "", (unsigned long long)total);
}

/* Inflate up to n bytes into dst; *got says how many came. Returns the
 * last zlib status (Z_OK, Z_STREAM_END, or an error). Concatenated gzip
 * members are followed. */
static int zread(z_stream *z, uint8_t *dst, size_t n, size_t *got)
{
	*got = 0;
	int st = Z_OK;
	while (*got < n) {
		size_t want = n - *got;
		z->next_out = dst + *got;
		z->avail_out = want > UINT_MAX ? UINT_MAX : (uInt)want;
		uInt before = z->avail_out;
		st = inflate(z, Z_NO_FLUSH);
		*got += before - z->avail_out;
		if (st == Z_STREAM_END) {
			/* another gzip member may follow; other trailing
			 * bytes are ignored, as gzip(1) does */
			if (z->avail_in < 2 || *got == n ||
			    z->next_in[0] != 0x1f || z->next_in[1] != 0x8b)
				return st;
			if (inflateReset(z) != Z_OK)
				return Z_STREAM_ERROR;
			continue;
		}
		if (st == Z_BUF_ERROR && z->avail_in == 0)
			return st; /* input ended early */
		if (st != Z_OK)
			return st;
	}
	return st;
}

static int parse_gzip(tlcm_idx_file_t *x, const uint8_t *file, size_t len,
		      const char *name, char *why, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return TLCM_ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)file;
	z.avail_in = (uInt)len; /* len <= TLCM_IDX_MAX_FILE < 4 GiB */
	uint8_t hdr[4 + 4 * TLCM_IDX_MAX_DIMS];
	size_t got = 0, more = 0;
	uint64_t total = 0;
	int rc = 0, st = zread(&z, hdr, 4, &got);
	if (got < 4)
		goto short_data;
	if ((rc = check_magic(hdr, name, why, cap)))
		goto out;
	st = zread(&z, hdr + 4, 4u * hdr[3], &more);
	got += more;
	if (more < 4u * hdr[3])
		goto short_data;
	if ((rc = read_dims(x, hdr, &total, name, why, cap)))
		goto out;
	x->data = malloc(total ? (size_t)total : 1);
	if (!x->data) {
		WHY("%s: cannot allocate %llu bytes", name,
		    (unsigned long long)total);
		rc = TLCM_ENOMEM;
		goto out;
	}
	size_t hlen = 4 + 4 * (size_t)hdr[3];
	memcpy(x->data, hdr, hlen);
	if (total > hlen) {
		st = zread(&z, x->data + hlen, (size_t)total - hlen, &more);
		got += more;
	}
	if (got < total)
		goto short_data;
	/* the data must end here */
	if (st != Z_STREAM_END) {
		uint8_t extra[64];
		st = zread(&z, extra, sizeof extra, &more);
		if (more) {
			char shape[128];
			describe_shape(x, total, shape, sizeof shape);
			WHY("%s: more data than the header declares: %s, "
			    "then at least %zu more bytes", name, shape, more);
			rc = TLCM_EBADMSG;
			goto out;
		}
		if (st == Z_BUF_ERROR) { /* the input ended first */
			WHY("%s: truncated gzip stream: the data is complete "
			    "but the gzip end (checksum, size) is missing",
			    name);
			rc = TLCM_EBADMSG;
			goto out;
		}
		if (st != Z_STREAM_END) {
			WHY("%s: corrupt gzip data: %s", name,
			    z.msg ? z.msg : "inflate failed");
			rc = TLCM_EBADMSG;
			goto out;
		}
	}
	x->len = (size_t)total;
	x->items = x->data + hlen;
	inflateEnd(&z);
	return 0;
short_data:
	if (st == Z_DATA_ERROR || st == Z_STREAM_ERROR || st == Z_MEM_ERROR) {
		WHY("%s: corrupt gzip data after %zu bytes: %s", name, got,
		    z.msg ? z.msg : "inflate failed");
	} else if (got < 4 || got < 4 + 4 * (size_t)hdr[3]) {
		WHY("%s: truncated: the file ends after %zu bytes, inside the "
		    "IDX header", name, got);
	} else {
		char shape[128];
		describe_shape(x, total, shape, sizeof shape);
		WHY("%s: truncated: the header declares %s but the data ends "
		    "after %zu bytes", name, shape, got);
	}
	rc = TLCM_EBADMSG;
out:
	inflateEnd(&z);
	free(x->data);
	x->data = NULL;
	return rc;
}

static int parse_raw(tlcm_idx_file_t *x, const uint8_t *file, size_t len,
		     const char *name, char *why, size_t cap)
{
	uint64_t total;
	int rc;
	if (len < 4) {
		WHY("%s: truncated: %zu bytes, an IDX header needs at least 8",
		    name, len);
		return TLCM_EBADMSG;
	}
	if ((rc = check_magic(file, name, why, cap)))
		return rc;
	size_t hlen = 4 + 4 * (size_t)file[3];
	if (len < hlen) {
		WHY("%s: truncated: the file ends after %zu bytes, inside the "
		    "IDX header", name, len);
		return TLCM_EBADMSG;
	}
	if ((rc = read_dims(x, file, &total, name, why, cap)))
		return rc;
	if (len != total) {
		char shape[128];
		describe_shape(x, total, shape, sizeof shape);
		if (len < total)
			WHY("%s: truncated: the header declares %s but the "
			    "file has %zu bytes", name, shape, len);
		else
			WHY("%s: more data than the header declares: %s, the "
			    "file has %zu bytes", name, shape, len);
		return TLCM_EBADMSG;
	}
	x->data = malloc(len);
	if (!x->data)
		return TLCM_ENOMEM;
	memcpy(x->data, file, len);
	x->len = len;
	x->items = x->data + hlen;
	return 0;
}

int tlcm_idx_file_parse(tlcm_idx_file_t *out, const void *file, size_t len,
		   const char *name, char *why, size_t cap)
{
	const uint8_t *p = file;
	memset(out, 0, sizeof *out);
	if (len == 0) {
		WHY("%s: empty file (0 bytes)", name);
		return TLCM_EBADMSG;
	}
	if (len > TLCM_IDX_MAX_FILE) {
		WHY("%s: %zu bytes is more than the %zu this reader accepts",
		    name, len, TLCM_IDX_MAX_FILE);
		return TLCM_ETOOBIG;
	}
	int rc = len >= 2 && p[0] == 0x1f && p[1] == 0x8b
			 ? parse_gzip(out, p, len, name, why, cap)
			 : parse_raw(out, p, len, name, why, cap);
	if (rc)
		memset(out, 0, sizeof *out);
	return rc;
}

int tlcm_idx_file_load(tlcm_idx_file_t *out, const char *path, char *why,
		       size_t cap)
{
	void *file;
	size_t len;
	memset(out, 0, sizeof *out);
	int rc = tlcm_io_read_file(path, TLCM_IDX_MAX_FILE, &file, &len);
	if (rc == TLCM_EINVAL) {
		WHY("%s: not a regular file", path);
		return rc;
	}
	if (rc == TLCM_ETOOBIG) {
		WHY("%s: larger than the %zu bytes this reader accepts", path,
		    TLCM_IDX_MAX_FILE);
		return rc;
	}
	if (rc) {
		WHY("cannot read %s: %s", path, rc == TLCM_ENOENT
			    ? "no such file or directory" : tlcm_strerror(rc));
		return rc;
	}
	rc = tlcm_idx_file_parse(out, file, len, path, why, cap);
	free(file);
	return rc;
}
