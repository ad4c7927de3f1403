/* fb.h — the small runtime behind TinyLCM's generated FlatBuffers C code.
 *
 * Headers made by tinylcm-fbgen (one per schema, `X_fb.h`) call into this
 * file; application code mostly uses the generated names and only needs the
 * builder (tlcm_fbb_*) from here.
 *
 * Reading. A FlatBuffer is read in place: accessors return values, defaults,
 * or pointers into the buffer, never copies. Scalars are loaded with memcpy,
 * so any alignment is safe; pointer results (scalar vectors, structs) need
 * their target aligned, which the verifier checks on the real addresses (a
 * buffer at an 8-byte aligned address, as malloc gives, always passes when
 * well formed). All accessors accept a NULL table and then return the default, so
 * chains like `T_child(T_as_root(buf))` are safe. Readers trust the buffer:
 * verify anything that came from outside the process first.
 *
 * Verifying. `X_verify_as_root(buf, len, &why)` (generated) walks every
 * reachable table, string and vector and checks bounds, alignment, vtables,
 * string termination, required fields, union types, nesting depth and the
 * file identifier. It never reads outside [buf, buf+len). On failure *why
 * names the table, field and reason; the text lives in thread-local storage
 * and stays valid until the next verification on the same thread.
 *
 * Building. tlcm_fbb_t writes back to front, either into a caller-supplied
 * fixed buffer (e.g. ring memory: nothing is allocated, and running out of
 * room is the sticky error TLCM_ENOSPC) or into a growable heap buffer.
 * Strings, vectors and sub-tables are created before the table that refers to
 * them, and only one table is open at a time (the FlatBuffers rule). Errors
 * are sticky: every call after the first failure is a no-op, and
 * tlcm_fbb_finish() returns NULL with tlcm_fbb_error() telling why, so build
 * code need not check every call.
 *
 * Hosts must be little-endian (every target TinyLCM runs on is).
 */
#ifndef TLCM_FB_H
#define TLCM_FB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the TinyLCM FlatBuffers runtime supports little-endian hosts only"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------ */

#define TLCM_FB_MAX_BUFFER ((size_t)0x7fffffff) /* 2 GiB - 1, as FlatBuffers */
#define TLCM_FB_MAX_DEPTH 64                    /* nested tables/vectors */
#define TLCM_FB_MAX_TABLES 1000000u             /* tables visited per verify */
#define TLCM_FB_IDENTIFIER_SIZE 4

/* ---- scalar loads (unaligned-safe, little-endian) ----------------------- */

#define TLCM_FB__LOAD(name, type)                                         \
	static inline type tlcm_fb_load_##name(const void *p)             \
	{                                                                 \
		type v;                                                   \
		memcpy(&v, p, sizeof v);                                  \
		return v;                                                 \
	}
TLCM_FB__LOAD(u8, uint8_t)
TLCM_FB__LOAD(i8, int8_t)
TLCM_FB__LOAD(u16, uint16_t)
TLCM_FB__LOAD(i16, int16_t)
TLCM_FB__LOAD(u32, uint32_t)
TLCM_FB__LOAD(i32, int32_t)
TLCM_FB__LOAD(u64, uint64_t)
TLCM_FB__LOAD(i64, int64_t)
TLCM_FB__LOAD(f32, float)
TLCM_FB__LOAD(f64, double)
#undef TLCM_FB__LOAD

static inline bool tlcm_fb_load_bool(const void *p)
{
	return *(const uint8_t *)p != 0;
}

/* ---- navigation ---------------------------------------------------------- */

/* Address of the field at vtable offset vt_off in table t, or NULL when the
 * field is absent (or t is NULL). */
static inline const uint8_t *tlcm_fb_field(const void *t, unsigned vt_off)
{
	if (!t)
		return NULL;
	const uint8_t *tp = (const uint8_t *)t;
	const uint8_t *vt = tp - tlcm_fb_load_i32(tp);
	if (vt_off >= tlcm_fb_load_u16(vt))
		return NULL;
	uint16_t o = tlcm_fb_load_u16(vt + vt_off);
	return o ? tp + o : NULL;
}

/* Follow the uoffset stored at p (NULL stays NULL). */
static inline const uint8_t *tlcm_fb_deref(const uint8_t *p)
{
	return p ? p + tlcm_fb_load_u32(p) : NULL;
}

/* Vectors and strings: p points at the uint32 length. */
static inline size_t tlcm_fb_vec_len(const uint8_t *vec)
{
	return vec ? tlcm_fb_load_u32(vec) : 0;
}

static inline const uint8_t *tlcm_fb_vec_data(const uint8_t *vec)
{
	return vec ? vec + 4 : NULL;
}

/* Element i of a vector of uoffsets (strings, tables, union values). */
static inline const uint8_t *tlcm_fb_vec_deref(const uint8_t *vec, size_t i)
{
	if (!vec || i >= tlcm_fb_load_u32(vec))
		return NULL;
	return tlcm_fb_deref(vec + 4 + 4 * i);
}

static inline const char *tlcm_fb_str(const uint8_t *s)
{
	return s ? (const char *)s + 4 : NULL;
}

static inline const void *tlcm_fb_root(const void *buf)
{
	return buf ? tlcm_fb_deref((const uint8_t *)buf) : NULL;
}

static inline const void *tlcm_fb_root_size_prefixed(const void *buf)
{
	return buf ? tlcm_fb_deref((const uint8_t *)buf + 4) : NULL;
}

/* The 4 identifier bytes of a buffer of at least 8 bytes (not terminated). */
static inline const char *tlcm_fb_identifier(const void *buf)
{
	return (const char *)buf + 4;
}

/* True when buf (len bytes) carries identifier ident (4 chars). */
static inline bool tlcm_fb_has_identifier(const void *buf, size_t len,
					  const char *ident)
{
	return buf && ident && len >= 8 &&
	       memcmp((const char *)buf + 4, ident, 4) == 0;
}

/* ---- verifier primitives (used by generated code) ------------------------ */

typedef struct tlcm_fb_verifier {
	const uint8_t *buf;
	uint32_t len;
	uint32_t tables; /* visited so far, bounded by TLCM_FB_MAX_TABLES */
} tlcm_fb_verifier_t;

/* A table whose header has been checked. */
typedef struct tlcm_fb_vtable {
	uint32_t pos;   /* table start (the soffset) */
	uint32_t vt;    /* vtable start */
	uint16_t vsize; /* vtable bytes */
	uint16_t tsize; /* table inline bytes */
	const char *type;
} tlcm_fb_vtable_t;

typedef int (*tlcm_fb_verify_fn)(tlcm_fb_verifier_t *v, uint32_t pos,
				 int depth);

/* Record a failure ("Type.field: reason") and return TLCM_EBADMSG. */
int tlcm_fb_fail(const char *type, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int tlcm_fb_verify_buffer(const void *buf, size_t len, const char *ident,
			  bool size_prefixed, const char *type,
			  tlcm_fb_verify_fn fn, const char **why);

int tlcm_fb_verify_table_head(tlcm_fb_verifier_t *v, uint32_t pos, int depth,
			      const char *type, tlcm_fb_vtable_t *t);

/* Position of field vt_off inside table t, 0 when absent; checks that size
 * bytes fit in the table and the field is aligned to align. */
int tlcm_fb_verify_field(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			 unsigned vt_off, size_t size, size_t align,
			 bool required, const char *field, uint32_t *pos);

/* Follow the uoffset field vt_off; *target = 0 when absent. */
int tlcm_fb_verify_offset(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			  unsigned vt_off, bool required, const char *field,
			  uint32_t *target);

/* Offset at absolute position at: checks the target lies in the buffer. */
int tlcm_fb_verify_uoffset_at(tlcm_fb_verifier_t *v, uint32_t at,
			      const char *type, const char *field,
			      uint32_t *target);

int tlcm_fb_verify_string_at(tlcm_fb_verifier_t *v, uint32_t pos,
			     const char *type, const char *field);

/* Vector header at pos with n elements of elem_size bytes, data aligned to
 * align. *n receives the element count. */
int tlcm_fb_verify_vector_at(tlcm_fb_verifier_t *v, uint32_t pos,
			     size_t elem_size, size_t align, const char *type,
			     const char *field, uint32_t *n);

/* Struct of size bytes at pos (out-of-line, e.g. a union member). */
int tlcm_fb_verify_struct_at(tlcm_fb_verifier_t *v, uint32_t pos, size_t size,
			     size_t align, const char *type, const char *field);

/* Convenience wrappers for whole fields. */
int tlcm_fb_verify_string_field(tlcm_fb_verifier_t *v,
				const tlcm_fb_vtable_t *t, unsigned vt_off,
				bool required, const char *field);
int tlcm_fb_verify_vector_field(tlcm_fb_verifier_t *v,
				const tlcm_fb_vtable_t *t, unsigned vt_off,
				size_t elem_size, size_t align, bool required,
				const char *field, uint32_t *pos, uint32_t *n);
int tlcm_fb_verify_table_field(tlcm_fb_verifier_t *v, const tlcm_fb_vtable_t *t,
			       unsigned vt_off, bool required,
			       const char *field, tlcm_fb_verify_fn fn,
			       int depth);
int tlcm_fb_verify_string_vector_field(tlcm_fb_verifier_t *v,
				       const tlcm_fb_vtable_t *t,
				       unsigned vt_off, bool required,
				       const char *field);
int tlcm_fb_verify_table_vector_field(tlcm_fb_verifier_t *v,
				      const tlcm_fb_vtable_t *t,
				      unsigned vt_off, bool required,
				      const char *field, tlcm_fb_verify_fn fn,
				      int depth);

/* ---- builder ------------------------------------------------------------- */

/* A reference to something already written: its distance from the buffer's
 * end. 0 means "nothing" (absent, or an error happened). */
typedef uint32_t tlcm_fbb_ref_t;

#define TLCM_FBB_INLINE_FIELDS 64
#define TLCM_FBB_VTABLE_CACHE 16

typedef struct tlcm_fbb {
	uint8_t *buf;   /* data lives in buf[cap - used, cap) */
	size_t cap;
	size_t used;
	size_t minalign;
	int err;        /* sticky: first failure */
	bool fixed;     /* caller-owned memory, never reallocated */
	bool in_table;
	uint32_t table_start;  /* used when the open table started */
	uint32_t nfields;      /* slots in field_ref */
	uint32_t *field_ref;   /* per field id: ref after writing, 0 absent */
	uint32_t *field_heap;  /* field_ref when nfields > inline capacity */
	uint32_t field_heap_cap;
	uint32_t field_inline[TLCM_FBB_INLINE_FIELDS];
	uint32_t vtables[TLCM_FBB_VTABLE_CACHE]; /* refs, for de-duplication */
	unsigned nvtables;
} tlcm_fbb_t;

/* Growable heap buffer; initial_cap 0 picks a default. */
int tlcm_fbb_init(tlcm_fbb_t *b, size_t initial_cap);
/* Fixed buffer mem[0..cap): mem + cap must be aligned to the largest
 * alignment the message uses (8 covers every scalar). Allocates nothing
 * unless a table has more than TLCM_FBB_INLINE_FIELDS fields. */
void tlcm_fbb_init_fixed(tlcm_fbb_t *b, void *mem, size_t cap);
/* Start over, keeping the memory. */
void tlcm_fbb_reset(tlcm_fbb_t *b);
void tlcm_fbb_fini(tlcm_fbb_t *b);
static inline int tlcm_fbb_error(const tlcm_fbb_t *b)
{
	return b->err;
}

/* Strings and vectors (not while a table is open). */
tlcm_fbb_ref_t tlcm_fbb_string(tlcm_fbb_t *b, const char *s, size_t len);
tlcm_fbb_ref_t tlcm_fbb_cstring(tlcm_fbb_t *b, const char *s);
/* n elements of elem_size bytes copied from data (scalars or structs). */
tlcm_fbb_ref_t tlcm_fbb_vec(tlcm_fbb_t *b, const void *data, size_t n,
			    size_t elem_size, size_t align);
/* Like tlcm_fbb_vec but leaves the elements for the caller to fill through
 * *out (valid until the next builder call): zero-copy output. */
tlcm_fbb_ref_t tlcm_fbb_vec_alloc(tlcm_fbb_t *b, size_t n, size_t elem_size,
				  size_t align, void **out);
/* Vector of references (strings, tables, union values); a 0 entry is an
 * error since FlatBuffers vectors cannot hold nulls. */
tlcm_fbb_ref_t tlcm_fbb_vec_refs(tlcm_fbb_t *b, const tlcm_fbb_ref_t *refs,
				 size_t n);
/* A struct written out of line (a union member that is a struct). */
tlcm_fbb_ref_t tlcm_fbb_struct(tlcm_fbb_t *b, const void *s, size_t size,
			       size_t align);

/* Tables (used by generated T_start / T_add_F / T_end). */
void tlcm_fbb_table_start(tlcm_fbb_t *b, unsigned nfields);
void tlcm_fbb_add_scalar(tlcm_fbb_t *b, unsigned id, const void *v,
			 size_t size, size_t align);
void tlcm_fbb_add_ref(tlcm_fbb_t *b, unsigned id, tlcm_fbb_ref_t ref);
static inline bool tlcm_fbb_has_field(const tlcm_fbb_t *b, unsigned id)
{
	return b->in_table && id < b->nfields && b->field_ref[id] != 0;
}
/* Fails the build (TLCM_EINVAL) when a required field was not added. */
void tlcm_fbb_require(tlcm_fbb_t *b, unsigned id);
tlcm_fbb_ref_t tlcm_fbb_table_end(tlcm_fbb_t *b);

/* Finish with root table `root` and optional 4-char identifier; returns the
 * buffer start and its size, or NULL (see tlcm_fbb_error). The buffer stays
 * valid until the builder is reset or freed. */
const void *tlcm_fbb_finish(tlcm_fbb_t *b, tlcm_fbb_ref_t root,
			    const char *identifier, size_t *size);
/* Same with a leading uint32 size (not counting itself). */
const void *tlcm_fbb_finish_size_prefixed(tlcm_fbb_t *b, tlcm_fbb_ref_t root,
					  const char *identifier,
					  size_t *size);

#ifdef __cplusplus
}
#endif

#endif
