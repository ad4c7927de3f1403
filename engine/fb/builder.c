/* builder.c — back-to-front FlatBuffers builder (see fb.h).
 *
 * Data grows from the end of the buffer towards its start; a reference is the
 * distance of an object from the end, so references stay valid when a
 * growable buffer is reallocated and its content moved to the new end.
 * Alignment is tracked relative to the end: finish pads the front so the
 * total size is a multiple of the largest alignment used.
 */
#include <stdlib.h>

#include "engine/fb/fb.h"

#define DEFAULT_CAP 1024

static int fail(tlcm_fbb_t *b, int err)
{
	if (!b->err)
		b->err = err;
	return b->err;
}

/* Set every member but the scratch arrays, which need no clearing: the
 * field slots are cleared per table, the vtable cache is bounded by
 * nvtables. Keeps building a small message in a ring slot cheap. */
static void init_common(tlcm_fbb_t *b)
{
	b->used = 0;
	b->minalign = 1;
	b->err = 0;
	b->in_table = false;
	b->table_start = 0;
	b->nfields = 0;
	b->field_ref = b->field_inline;
	b->field_heap = NULL;
	b->field_heap_cap = 0;
	b->nvtables = 0;
}

int tlcm_fbb_init(tlcm_fbb_t *b, size_t initial_cap)
{
	init_common(b);
	b->fixed = false;
	b->cap = initial_cap ? (initial_cap + 15) & ~(size_t)15 : DEFAULT_CAP;
	b->buf = malloc(b->cap);
	if (!b->buf) {
		b->cap = 0;
		return fail(b, TLCM_ENOMEM);
	}
	return 0;
}

void tlcm_fbb_init_fixed(tlcm_fbb_t *b, void *mem, size_t cap)
{
	init_common(b);
	b->buf = mem;
	b->cap = cap > TLCM_FB_MAX_BUFFER ? TLCM_FB_MAX_BUFFER : cap;
	b->fixed = true;
	if (!mem && cap)
		fail(b, TLCM_EINVAL);
}

void tlcm_fbb_reset(tlcm_fbb_t *b)
{
	b->used = 0;
	b->minalign = 1;
	b->err = 0;
	b->in_table = false;
	b->nvtables = 0;
	if (!b->fixed && !b->buf)
		b->err = TLCM_ENOMEM;
}

void tlcm_fbb_fini(tlcm_fbb_t *b)
{
	if (!b->fixed)
		free(b->buf);
	free(b->field_heap);
	memset(b, 0, sizeof *b);
}

static int grow(tlcm_fbb_t *b, size_t n);

/* Make room for n more bytes at the front; 0 or the sticky error. The
 * common case (room, no error) stays inline; growth is out of line. */
static inline int ensure(tlcm_fbb_t *b, size_t n)
{
	if (__builtin_expect(!b->err && b->cap - b->used >= n, 1))
		return 0;
	return grow(b, n);
}

static __attribute__((noinline, cold)) int grow(tlcm_fbb_t *b, size_t n)
{
	if (b->err)
		return b->err;
	if (n > TLCM_FB_MAX_BUFFER || b->used + n > TLCM_FB_MAX_BUFFER)
		return fail(b, TLCM_ETOOBIG);
	if (b->cap - b->used >= n)
		return 0;
	if (b->fixed)
		return fail(b, TLCM_ENOSPC);
	size_t ncap = b->cap ? b->cap : DEFAULT_CAP;
	while (ncap - b->used < n)
		ncap *= 2;
	if (ncap > TLCM_FB_MAX_BUFFER) /* the inline fast path relies on it */
		ncap = TLCM_FB_MAX_BUFFER;
	uint8_t *nb = malloc(ncap);
	if (!nb)
		return fail(b, TLCM_ENOMEM);
	memcpy(nb + ncap - b->used, b->buf + b->cap - b->used, b->used);
	free(b->buf);
	b->buf = nb;
	b->cap = ncap;
	return 0;
}

static inline uint8_t *front(tlcm_fbb_t *b)
{
	return b->buf + b->cap - b->used;
}

/* Zero-pad so that after writing len more bytes the front is aligned. */
static inline int prealign(tlcm_fbb_t *b, size_t len, size_t align)
{
	if (align > b->minalign)
		b->minalign = align;
	size_t pad = (0 - (b->used + len)) & (align - 1);
	if (ensure(b, pad + len))
		return b->err;
	b->used += pad;
	memset(front(b), 0, pad);
	return 0;
}

/* Reserve n bytes at the front (already aligned by the caller). */
static inline uint8_t *push(tlcm_fbb_t *b, size_t n)
{
	if (ensure(b, n))
		return NULL;
	b->used += n;
	return front(b);
}

static void push_u32(tlcm_fbb_t *b, uint32_t v)
{
	uint8_t *p = push(b, 4);
	if (p)
		memcpy(p, &v, 4);
}

static int no_table(tlcm_fbb_t *b)
{
	return b->in_table ? fail(b, TLCM_EINVAL) : b->err;
}

tlcm_fbb_ref_t tlcm_fbb_string(tlcm_fbb_t *b, const char *s, size_t len)
{
	if (no_table(b))
		return 0;
	if (!s && len)
		return fail(b, TLCM_EINVAL), 0;
	if (len > UINT32_MAX - 8)
		return fail(b, TLCM_ETOOBIG), 0;
	if (prealign(b, len + 1, 4))
		return 0;
	uint8_t *p = push(b, len + 1);
	if (!p)
		return 0;
	if (len)
		memcpy(p, s, len);
	p[len] = 0;
	push_u32(b, (uint32_t)len);
	return b->err ? 0 : (tlcm_fbb_ref_t)b->used;
}

tlcm_fbb_ref_t tlcm_fbb_cstring(tlcm_fbb_t *b, const char *s)
{
	return tlcm_fbb_string(b, s, s ? strlen(s) : 0);
}

tlcm_fbb_ref_t tlcm_fbb_vec_alloc(tlcm_fbb_t *b, size_t n, size_t elem_size,
				  size_t align, void **out)
{
	*out = NULL;
	if (no_table(b))
		return 0;
	if (align == 0 || (align & (align - 1)) || elem_size == 0)
		return fail(b, TLCM_EINVAL), 0;
	if (n > (TLCM_FB_MAX_BUFFER - 8) / elem_size)
		return fail(b, TLCM_ETOOBIG), 0;
	size_t bytes = n * elem_size;
	/* the uint32 length sits right before the data */
	if (prealign(b, bytes, 4) || prealign(b, bytes, align))
		return 0;
	uint8_t *p = push(b, bytes);
	if (!p)
		return 0;
	push_u32(b, (uint32_t)n);
	if (b->err)
		return 0;
	*out = front(b) + 4;
	return (tlcm_fbb_ref_t)b->used;
}

tlcm_fbb_ref_t tlcm_fbb_vec(tlcm_fbb_t *b, const void *data, size_t n,
			    size_t elem_size, size_t align)
{
	if (n && !data)
		return fail(b, TLCM_EINVAL), 0;
	void *out;
	tlcm_fbb_ref_t ref = tlcm_fbb_vec_alloc(b, n, elem_size, align, &out);
	if (ref && n)
		memcpy(out, data, n * elem_size);
	return ref;
}

tlcm_fbb_ref_t tlcm_fbb_vec_refs(tlcm_fbb_t *b, const tlcm_fbb_ref_t *refs,
				 size_t n)
{
	if (no_table(b))
		return 0;
	if (n && !refs)
		return fail(b, TLCM_EINVAL), 0;
	if (n > (TLCM_FB_MAX_BUFFER - 8) / 4)
		return fail(b, TLCM_ETOOBIG), 0;
	if (prealign(b, n * 4, 4) || ensure(b, n * 4 + 4))
		return 0;
	for (size_t i = n; i-- > 0;) {
		if (refs[i] == 0 || refs[i] > b->used)
			return fail(b, TLCM_EINVAL), 0;
		b->used += 4;
		uint32_t off = (uint32_t)(b->used - refs[i]);
		memcpy(front(b), &off, 4);
	}
	push_u32(b, (uint32_t)n);
	return b->err ? 0 : (tlcm_fbb_ref_t)b->used;
}

tlcm_fbb_ref_t tlcm_fbb_struct(tlcm_fbb_t *b, const void *s, size_t size,
			       size_t align)
{
	if (no_table(b))
		return 0;
	if (!s || !size || !align || (align & (align - 1)))
		return fail(b, TLCM_EINVAL), 0;
	if (prealign(b, size, align))
		return 0;
	uint8_t *p = push(b, size);
	if (!p)
		return 0;
	memcpy(p, s, size);
	return (tlcm_fbb_ref_t)b->used;
}

void tlcm_fbb_table_start(tlcm_fbb_t *b, unsigned nfields)
{
	if (no_table(b))
		return;
	if (nfields > UINT16_MAX / 2 - 2) {
		fail(b, TLCM_ETOOBIG);
		return;
	}
	if (nfields > TLCM_FBB_INLINE_FIELDS) {
		if (nfields > b->field_heap_cap) {
			uint32_t *h = realloc(b->field_heap,
					      nfields * sizeof *h);
			if (!h) {
				fail(b, TLCM_ENOMEM);
				return;
			}
			b->field_heap = h;
			b->field_heap_cap = nfields;
		}
		b->field_ref = b->field_heap;
	} else {
		b->field_ref = b->field_inline;
	}
	memset(b->field_ref, 0, nfields * sizeof *b->field_ref);
	b->nfields = nfields;
	b->in_table = true;
	b->table_start = (uint32_t)b->used;
}

static int field_ok(tlcm_fbb_t *b, unsigned id)
{
	if (b->err)
		return 0;
	if (!b->in_table || id >= b->nfields) {
		fail(b, TLCM_EINVAL);
		return 0;
	}
	return 1;
}

void tlcm_fbb_add_scalar(tlcm_fbb_t *b, unsigned id, const void *v,
			 size_t size, size_t align)
{
	if (!field_ok(b, id) || prealign(b, size, align))
		return;
	uint8_t *p = push(b, size);
	if (!p)
		return;
	memcpy(p, v, size);
	b->field_ref[id] = (uint32_t)b->used;
}

void tlcm_fbb_add_ref(tlcm_fbb_t *b, unsigned id, tlcm_fbb_ref_t ref)
{
	if (ref == 0 || !field_ok(b, id))
		return;
	if (ref > b->used) {
		fail(b, TLCM_EINVAL);
		return;
	}
	if (prealign(b, 4, 4))
		return;
	push_u32(b, (uint32_t)(b->used + 4 - ref));
	if (!b->err)
		b->field_ref[id] = (uint32_t)b->used;
}

void tlcm_fbb_require(tlcm_fbb_t *b, unsigned id)
{
	if (!b->err && !tlcm_fbb_has_field(b, id))
		fail(b, TLCM_EINVAL);
}

tlcm_fbb_ref_t tlcm_fbb_table_end(tlcm_fbb_t *b)
{
	if (b->err)
		return 0;
	if (!b->in_table)
		return fail(b, TLCM_EINVAL), 0;
	b->in_table = false;
	if (prealign(b, 4, 4))
		return 0;
	if (!push(b, 4)) /* soffset to the vtable, patched below */
		return 0;
	uint32_t table_ref = (uint32_t)b->used;
	size_t tsize = table_ref - b->table_start;
	unsigned n = b->nfields;
	while (n > 0 && b->field_ref[n - 1] == 0)
		n--;
	size_t vsize = 4 + 2 * (size_t)n;
	if (tsize > UINT16_MAX)
		return fail(b, TLCM_ETOOBIG), 0;
	uint8_t *vt = push(b, vsize);
	if (!vt)
		return 0;
	uint16_t h[2] = {(uint16_t)vsize, (uint16_t)tsize};
	memcpy(vt, h, 4);
	for (unsigned i = 0; i < n; i++) {
		uint32_t fr = b->field_ref[i];
		uint16_t off = fr ? (uint16_t)(table_ref - fr) : 0;
		memcpy(vt + 4 + 2 * i, &off, 2);
	}
	/* reuse an identical vtable written earlier in this buffer */
	uint32_t vt_ref = (uint32_t)b->used;
	for (unsigned i = 0; i < b->nvtables; i++) {
		const uint8_t *old = b->buf + b->cap - b->vtables[i];
		/* sizes first: a shorter vtable may end the buffer */
		if (memcmp(old, vt, 2) == 0 && memcmp(old, vt, vsize) == 0) {
			b->used -= vsize;
			vt_ref = b->vtables[i];
			break;
		}
	}
	if (vt_ref == b->used) {
		if (b->nvtables < TLCM_FBB_VTABLE_CACHE)
			b->vtables[b->nvtables++] = vt_ref;
		else
			b->vtables[vt_ref % TLCM_FBB_VTABLE_CACHE] = vt_ref;
	}
	int32_t soff = (int32_t)((int64_t)vt_ref - (int64_t)table_ref);
	memcpy(b->buf + b->cap - table_ref, &soff, 4);
	return table_ref;
}

static const void *finish(tlcm_fbb_t *b, tlcm_fbb_ref_t root,
			  const char *identifier, bool size_prefixed,
			  size_t *size)
{
	if (size)
		*size = 0;
	if (!b->err && (b->in_table || root == 0 || root > b->used))
		fail(b, TLCM_EINVAL);
	if (!b->err && identifier && strlen(identifier) != 4)
		fail(b, TLCM_EINVAL);
	if (b->err)
		return NULL;
	size_t head = 4 + (identifier ? 4 : 0) + (size_prefixed ? 4 : 0);
	if (b->minalign < 4)
		b->minalign = 4;
	if (prealign(b, head, b->minalign))
		return NULL;
	if (identifier)
		memcpy(push(b, 4), identifier, 4);
	push_u32(b, (uint32_t)(b->used + 4 - root));
	if (size_prefixed)
		push_u32(b, (uint32_t)b->used);
	if (b->err)
		return NULL;
	if (b->fixed && ((uintptr_t)front(b) & (b->minalign - 1))) {
		fail(b, TLCM_EINVAL); /* caller's memory end is misaligned */
		return NULL;
	}
	if (size)
		*size = b->used;
	return front(b);
}

const void *tlcm_fbb_finish(tlcm_fbb_t *b, tlcm_fbb_ref_t root,
			    const char *identifier, size_t *size)
{
	return finish(b, root, identifier, false, size);
}

const void *tlcm_fbb_finish_size_prefixed(tlcm_fbb_t *b, tlcm_fbb_ref_t root,
					  const char *identifier, size_t *size)
{
	return finish(b, root, identifier, true, size);
}
