/* verify.c — bounds-checked walk of an untrusted FlatBuffer (see fb.h).
 *
 * Generated X_verify_table() functions call these primitives field by field.
 * All arithmetic is done on 64-bit positions relative to the buffer start, so
 * no offset, length or product can wrap; every read is preceded by a range
 * check. Work is bounded by TLCM_FB_MAX_DEPTH and TLCM_FB_MAX_TABLES, which
 * also defeats buffers whose offsets share sub-objects to blow up a walk.
 */
#include <stdarg.h>
#include <stdio.h>

#include "engine/fb/fb.h"

static _Thread_local char why_buf[256];

int tlcm_fb_fail(const char *type, const char *field, const char *fmt, ...)
{
	int n = snprintf(why_buf, sizeof why_buf, "%s%s%s: ", type ? type : "",
			 field ? "." : "", field ? field : "");
	if (n < 0 || (size_t)n >= sizeof why_buf)
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why_buf + n, sizeof why_buf - (size_t)n, fmt, ap);
	va_end(ap);
	return TLCM_EBADMSG;
}

static inline bool in_range(const tlcm_fb_verifier_t *v, uint64_t pos,
			    uint64_t size)
{
	return pos <= v->len && size <= v->len - pos;
}

/* Alignment is checked on real addresses: readers hand out typed pointers
 * (structs, scalar vectors), so what matters is where the bytes sit. For a
 * buffer at an 8-byte aligned address this is FlatBuffers' own rule. */
#define is_aligned(pos, align) \
	((((uintptr_t)v->buf + (uintptr_t)(pos)) & ((align) - 1)) == 0)

int tlcm_fb_verify_buffer(const void *buf, size_t len, const char *ident,
			  bool size_prefixed, const char *type,
			  tlcm_fb_verify_fn fn, const char **why)
{
	static const char ok[] = "";
	int rc;
	const uint8_t *p = buf;
	if (why)
		*why = why_buf;
	if (!buf) {
		rc = tlcm_fb_fail(type, NULL, "NULL buffer");
		goto out;
	}
	size_t start = 0; /* where the root offset sits */
	if (size_prefixed) {
		if (len < 4) {
			rc = tlcm_fb_fail(type, NULL, "buffer of %zu bytes "
					  "has no size prefix", len);
			goto out;
		}
		uint32_t sz = tlcm_fb_load_u32(p);
		if (sz > len - 4) {
			rc = tlcm_fb_fail(type, NULL, "size prefix %u exceeds "
					  "the %zu bytes that follow it",
					  sz, len - 4);
			goto out;
		}
		/* alignment is relative to the start of the prefixed buffer */
		start = 4;
		len = (size_t)sz + 4;
	}
	if (len > TLCM_FB_MAX_BUFFER) {
		rc = tlcm_fb_fail(type, NULL, "buffer of %zu bytes exceeds "
				  "the 2 GiB FlatBuffers limit", len);
		goto out;
	}
	size_t min = start + 4 + (ident ? TLCM_FB_IDENTIFIER_SIZE : 0);
	if (len < min) {
		rc = tlcm_fb_fail(type, NULL, "buffer of %zu bytes is too "
				  "short (need at least %zu)", len, min);
		goto out;
	}
	if (ident && memcmp(p + start + 4, ident, 4) != 0) {
		char got[5] = {0};
		for (int i = 0; i < 4; i++)
			got[i] = (p[start + 4 + i] >= 0x20 &&
				  p[start + 4 + i] < 0x7f)
					 ? (char)p[start + 4 + i] : '?';
		rc = tlcm_fb_fail(type, NULL, "file identifier is \"%s\", "
				  "expected \"%.4s\"", got, ident);
		goto out;
	}
	tlcm_fb_verifier_t v = {.buf = p, .len = (uint32_t)len};
	uint32_t root = 0; /* set when rc is 0; gcc -O3 cannot tell */
	rc = tlcm_fb_verify_uoffset_at(&v, (uint32_t)start, type, "(root)",
				       &root);
	if (!rc)
		rc = fn(&v, root, 0);
out:
	if (why && rc == 0)
		*why = ok;
	return rc;
}

int tlcm_fb_verify_table_head(tlcm_fb_verifier_t *v, uint32_t pos, int depth,
			      const char *type, tlcm_fb_vtable_t *t)
{
	if (depth >= TLCM_FB_MAX_DEPTH)
		return tlcm_fb_fail(type, NULL, "nesting deeper than %d",
				    TLCM_FB_MAX_DEPTH);
	if (++v->tables > TLCM_FB_MAX_TABLES)
		return tlcm_fb_fail(type, NULL, "more than %u tables",
				    TLCM_FB_MAX_TABLES);
	if (!is_aligned(pos, 4) || !in_range(v, pos, 4))
		return tlcm_fb_fail(type, NULL, "table at offset %u is out of "
				    "bounds or misaligned (buffer %u bytes)",
				    pos, v->len);
	int64_t vt = (int64_t)pos - tlcm_fb_load_i32(v->buf + pos);
	if (vt < 0 || !is_aligned((uint64_t)vt, 2) || !in_range(v, (uint64_t)vt, 4))
		return tlcm_fb_fail(type, NULL, "vtable of table at offset %u "
				    "lies outside the buffer or is misaligned",
				    pos);
	uint16_t vsize = tlcm_fb_load_u16(v->buf + vt);
	uint16_t tsize = tlcm_fb_load_u16(v->buf + vt + 2);
	if (vsize < 4 || (vsize & 1) || !in_range(v, (uint64_t)vt, vsize))
		return tlcm_fb_fail(type, NULL, "vtable at offset %lld has "
				    "bad size %u", (long long)vt, vsize);
	if (tsize < 4 || !in_range(v, pos, tsize))
		return tlcm_fb_fail(type, NULL, "table at offset %u claims %u "
				    "bytes, past the end of the buffer", pos,
				    tsize);
	t->pos = pos;
	t->vt = (uint32_t)vt;
	t->vsize = vsize;
	t->tsize = tsize;
	t->type = type;
	return 0;
}

int tlcm_fb_verify_field(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			 unsigned vt_off, size_t size, size_t align,
			 bool required, const char *field, uint32_t *pos)
{
	*pos = 0;
	uint16_t o = 0;
	if (vt_off + 2 <= t->vsize)
		o = tlcm_fb_load_u16(v->buf + t->vt + vt_off);
	if (o == 0)
		return required ? tlcm_fb_fail(t->type, field, "required field "
					       "is missing") : 0;
	if (o < 4 || (uint64_t)o + size > t->tsize)
		return tlcm_fb_fail(t->type, field, "field at table offset %u "
				    "(%zu bytes) exceeds the table's %u bytes",
				    o, size, t->tsize);
	uint64_t p = (uint64_t)t->pos + o;
	if (!is_aligned(p, align))
		return tlcm_fb_fail(t->type, field, "field at buffer offset "
				    "%llu is not %zu-byte aligned",
				    (unsigned long long)p, align);
	*pos = (uint32_t)p;
	return 0;
}

int tlcm_fb_verify_uoffset_at(tlcm_fb_verifier_t *v, uint32_t at,
			      const char *type, const char *field,
			      uint32_t *target)
{
	if (!is_aligned(at, 4) || !in_range(v, at, 4))
		return tlcm_fb_fail(type, field, "offset at %u is out of "
				    "bounds or misaligned", at);
	uint32_t off = tlcm_fb_load_u32(v->buf + at);
	uint64_t tp = (uint64_t)at + off;
	if (off == 0 || tp >= v->len)
		return tlcm_fb_fail(type, field, "offset %u at %u points "
				    "outside the %u-byte buffer", off, at,
				    v->len);
	*target = (uint32_t)tp;
	return 0;
}

int tlcm_fb_verify_offset(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			  unsigned vt_off, bool required, const char *field,
			  uint32_t *target)
{
	uint32_t at;
	*target = 0;
	int rc = tlcm_fb_verify_field(v, t, vt_off, 4, 4, required, field, &at);
	if (rc || at == 0)
		return rc;
	return tlcm_fb_verify_uoffset_at(v, at, t->type, field, target);
}

int tlcm_fb_verify_vector_at(tlcm_fb_verifier_t *v, uint32_t pos,
			     size_t elem_size, size_t align, const char *type,
			     const char *field, uint32_t *n)
{
	if (!is_aligned(pos, 4) || !in_range(v, pos, 4))
		return tlcm_fb_fail(type, field, "vector at %u is out of "
				    "bounds or misaligned", pos);
	uint32_t len = tlcm_fb_load_u32(v->buf + pos);
	uint64_t bytes = (uint64_t)len * elem_size;
	if (!in_range(v, (uint64_t)pos + 4, bytes))
		return tlcm_fb_fail(type, field, "vector at %u of %u elements "
				    "(%llu bytes) runs past the %u-byte buffer",
				    pos, len, (unsigned long long)bytes,
				    v->len);
	if (!is_aligned((uint64_t)pos + 4, align))
		return tlcm_fb_fail(type, field, "vector data at %u is not "
				    "%zu-byte aligned", pos + 4, align);
	*n = len;
	return 0;
}

int tlcm_fb_verify_string_at(tlcm_fb_verifier_t *v, uint32_t pos,
			     const char *type, const char *field)
{
	uint32_t n = 0;
	int rc = tlcm_fb_verify_vector_at(v, pos, 1, 1, type, field, &n);
	if (rc)
		return rc;
	uint64_t end = (uint64_t)pos + 4 + n;
	if (end >= v->len)
		return tlcm_fb_fail(type, field, "string at %u of %u bytes has "
				    "no room for its terminating zero", pos, n);
	if (v->buf[end] != 0)
		return tlcm_fb_fail(type, field, "string at %u of %u bytes is "
				    "not zero-terminated", pos, n);
	return 0;
}

int tlcm_fb_verify_struct_at(tlcm_fb_verifier_t *v, uint32_t pos, size_t size,
			     size_t align, const char *type, const char *field)
{
	if (!in_range(v, pos, size) || !is_aligned(pos, align))
		return tlcm_fb_fail(type, field, "struct of %zu bytes at %u is "
				    "out of bounds or not %zu-byte aligned",
				    size, pos, align);
	return 0;
}

int tlcm_fb_verify_string_field(tlcm_fb_verifier_t *v,
				const tlcm_fb_vtable_t *t, unsigned vt_off,
				bool required, const char *field)
{
	uint32_t s;
	int rc = tlcm_fb_verify_offset(v, t, vt_off, required, field, &s);
	if (rc || !s)
		return rc;
	return tlcm_fb_verify_string_at(v, s, t->type, field);
}

int tlcm_fb_verify_vector_field(tlcm_fb_verifier_t *v,
				const tlcm_fb_vtable_t *t, unsigned vt_off,
				size_t elem_size, size_t align, bool required,
				const char *field, uint32_t *pos, uint32_t *n)
{
	*n = 0;
	int rc = tlcm_fb_verify_offset(v, t, vt_off, required, field, pos);
	if (rc || !*pos)
		return rc;
	return tlcm_fb_verify_vector_at(v, *pos, elem_size, align, t->type,
					field, n);
}

int tlcm_fb_verify_table_field(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			       unsigned vt_off, bool required,
			       const char *field, tlcm_fb_verify_fn fn,
			       int depth)
{
	uint32_t s;
	int rc = tlcm_fb_verify_offset(v, t, vt_off, required, field, &s);
	if (rc || !s)
		return rc;
	return fn(v, s, depth + 1);
}

int tlcm_fb_verify_string_vector_field(tlcm_fb_verifier_t *v,
				       const tlcm_fb_vtable_t *t,
				       unsigned vt_off, bool required,
				       const char *field)
{
	uint32_t pos = 0, n = 0, s = 0;
	int rc = tlcm_fb_verify_vector_field(v, t, vt_off, 4, 4, required,
					     field, &pos, &n);
	for (uint32_t i = 0; !rc && i < n; i++) {
		rc = tlcm_fb_verify_uoffset_at(v, pos + 4 + 4 * i, t->type,
					       field, &s);
		if (!rc)
			rc = tlcm_fb_verify_string_at(v, s, t->type, field);
	}
	return rc;
}

int tlcm_fb_verify_table_vector_field(tlcm_fb_verifier_t *v,
				      const tlcm_fb_vtable_t *t,
				      unsigned vt_off, bool required,
				      const char *field, tlcm_fb_verify_fn fn,
				      int depth)
{
	uint32_t pos = 0, n = 0, s = 0;
	int rc = tlcm_fb_verify_vector_field(v, t, vt_off, 4, 4, required,
					     field, &pos, &n);
	for (uint32_t i = 0; !rc && i < n; i++) {
		rc = tlcm_fb_verify_uoffset_at(v, pos + 4 + 4 * i, t->type,
					       field, &s);
		if (!rc)
			rc = fn(v, s, depth + 1);
	}
	return rc;
}
