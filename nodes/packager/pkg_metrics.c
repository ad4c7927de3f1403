/* pkg_metrics.c — sanitising and incremental metrics (pkg_metrics.h).
 *
 * Per source an open-addressing hash table of key → last value. Keys are
 * never removed from a table (a key that disappears is marked gone and
 * comes back as a change), so no tombstones; a table that would pass
 * MAX_KEYS is dropped and the source sends full snapshots from then on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "fb/metrics_fb.h"
#include "nodes/packager/pkg_metrics.h"
#include "nodes/packager/pkg_util.h"

#define MAX_KEYS 65536
#define MAX_SOURCES 64
#define MAX_KEY_LEN 200
#define REDACTED "REDACTED"

typedef struct {
	char *key; /* NULL: empty slot */
	size_t klen;
	char *str; /* text value, or NULL for a number */
	double num;
	uint64_t gen; /* the message that last had it */
	bool gone;
} slot_t;

typedef struct {
	char *name;
	slot_t *slots;
	size_t cap, n;
	bool fresh;       /* nothing sent since the reset: next one full */
	bool overflow;    /* too many keys: full snapshots only */
	uint64_t full_pkg; /* the package that got its last full snapshot */
	uint64_t gen;
} source_t;

struct tlcm_mstate {
	source_t src[MAX_SOURCES];
	size_t n;
};

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

static void table_clear(source_t *s)
{
	for (size_t i = 0; i < s->cap; i++) {
		free(s->slots[i].key);
		free(s->slots[i].str);
	}
	free(s->slots);
	s->slots = NULL;
	s->cap = s->n = 0;
}

tlcm_mstate_t *tlcm_mstate_new(void)
{
	return calloc(1, sizeof(tlcm_mstate_t));
}

void tlcm_mstate_reset(tlcm_mstate_t *st)
{
	for (size_t i = 0; i < st->n; i++) {
		table_clear(&st->src[i]);
		st->src[i].fresh = true;
		st->src[i].overflow = false;
	}
}

void tlcm_mstate_free(tlcm_mstate_t *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++) {
		table_clear(&st->src[i]);
		free(st->src[i].name);
	}
	free(st);
}

/* The slot of key (found, or the empty one where it would go). */
static slot_t *lookup(source_t *s, const char *k, size_t kl)
{
	size_t m = s->cap - 1;
	for (size_t i = hash(k, kl) & m;; i = (i + 1) & m) {
		slot_t *e = &s->slots[i];
		if (!e->key || (e->klen == kl && !memcmp(e->key, k, kl)))
			return e;
	}
}

static int grow(source_t *s)
{
	size_t nc = s->cap ? 2 * s->cap : 64;
	slot_t *old = s->slots;
	size_t oc = s->cap;
	s->slots = calloc(nc, sizeof *s->slots);
	if (!s->slots) {
		s->slots = old;
		return TLCM_ENOMEM;
	}
	s->cap = nc;
	for (size_t i = 0; i < oc; i++)
		if (old[i].key)
			*lookup(s, old[i].key, old[i].klen) = old[i];
	free(old);
	return 0;
}

static source_t *source_of(tlcm_mstate_t *st, const char *name)
{
	if (!name)
		name = "";
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->src[i].name, name))
			return &st->src[i];
	if (st->n == MAX_SOURCES)
		return NULL;
	source_t *s = &st->src[st->n];
	memset(s, 0, sizeof *s);
	if (!(s->name = strdup(name)))
		return NULL;
	s->fresh = true;
	st->n++;
	return s;
}

static bool sensitive(const tlcm_mopts_t *o, const char *k, size_t kl)
{
	for (size_t i = 0; i < o->nsensitive; i++)
		if (tlcm_key_sensitive(k, kl, o->sensitive[i]))
			return true;
	return false;
}

static bool same(const slot_t *e, const char *str, size_t slen, double num)
{
	if (e->gone)
		return false;
	if (str || e->str)
		return str && e->str && strlen(e->str) == slen &&
		       !memcmp(e->str, str, slen);
	return !memcmp(&e->num, &num, sizeof num); /* bits: NaN == NaN */
}

static tlcm_fbb_ref_t entry(tlcm_fbb_t *b, const char *k, size_t kl,
			    const char *str, size_t slen, double num,
			    bool removed)
{
	tlcm_fbb_ref_t kr = tlcm_fbb_string(b, k, kl);
	tlcm_fbb_ref_t sr = str ? tlcm_fbb_string(b, str, slen) : 0;
	tlcm_MetricEntry_start(b);
	tlcm_MetricEntry_add_key(b, kr);
	if (removed)
		tlcm_MetricEntry_add_removed(b, true);
	else if (sr)
		tlcm_MetricEntry_add_str(b, sr);
	else
		tlcm_MetricEntry_add_num(b, num);
	return tlcm_MetricEntry_end(b);
}

/* Remember value (str/num) for key in s; on out of memory the source
 * falls back to full snapshots. */
static void remember(source_t *s, slot_t *e, const char *k, size_t kl,
		     const char *str, size_t slen, double num)
{
	if (!e->key) {
		if (s->n + 1 > MAX_KEYS) {
			s->overflow = true;
			return;
		}
		if (!(e->key = malloc(kl + 1))) {
			s->overflow = true;
			return;
		}
		memcpy(e->key, k, kl);
		e->key[kl] = 0;
		e->klen = kl;
		s->n++;
	}
	free(e->str);
	e->str = NULL;
	if (str && (e->str = malloc(slen + 1))) {
		memcpy(e->str, str, slen);
		e->str[slen] = 0;
	} else if (str) {
		s->overflow = true;
	}
	e->num = num;
	e->gone = false;
	e->gen = s->gen;
}

int tlcm_metrics_rewrite(tlcm_mstate_t *st, const tlcm_mopts_t *o,
			 const void *msg, uint64_t pkg_no, tlcm_fbb_t *b,
			 const void **out, size_t *outlen, bool *full,
			 char *why, size_t whylen)
{
	tlcm_Metrics_table_t m = tlcm_Metrics_as_root(msg);
	size_t n = tlcm_Metrics_entries_len(m);
	const char *sname = tlcm_Metrics_source(m);
	/* the message as a whole first: keys and duplicates, in a table of
	 * its own so that a refused message changes no state */
	source_t chk = {0};
	while (chk.cap < 2 * n + 2)
		if (grow(&chk)) {
			table_clear(&chk);
			return TLCM_ENOMEM;
		}
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		tlcm_MetricEntry_table_t e = tlcm_Metrics_entries_at(m, i);
		const char *k = tlcm_MetricEntry_key(e);
		size_t kl = tlcm_MetricEntry_key_len(e);
		if (!kl || kl > MAX_KEY_LEN || memchr(k, 0, kl))
			rc = tlcm_fail(why, whylen, TLCM_EBADMSG, "Metrics "
				       "from '%s': entry %zu: key of %zu bytes "
				       "(1 to %d, no NUL)", sname ? sname : "",
				       i, kl, MAX_KEY_LEN);
		else {
			slot_t *sl = lookup(&chk, k, kl);
			if (sl->key)
				rc = tlcm_fail(why, whylen, TLCM_EBADMSG,
					       "Metrics from '%s': key '%.*s' "
					       "twice", sname ? sname : "",
					       (int)kl, k);
			sl->key = (char *)k; /* borrowed */
			sl->klen = kl;
		}
	}
	for (size_t i = 0; i < chk.cap; i++)
		chk.slots[i].key = NULL;
	table_clear(&chk);
	if (rc)
		return rc;

	source_t *s = source_of(st, sname);
	bool in_full = tlcm_Metrics_full(m);
	bool f = !o->incremental || !s || s->overflow || s->fresh ||
		 (o->full_every && pkg_no % o->full_every == 0 &&
		  s->full_pkg != pkg_no);
	tlcm_fbb_reset(b);
	tlcm_fbb_ref_t *refs = malloc((2 * n + 1) * sizeof *refs);
	if (!refs)
		return TLCM_ENOMEM;
	size_t k = 0;
	if (s && s->overflow)
		table_clear(s); /* full snapshots only: keep no values */
	if (s && !s->overflow) {
		s->gen++;
		if (s->cap < 2 * (s->n + n) + 2 && s->n + n <= MAX_KEYS)
			while (s->cap < 2 * (s->n + n) + 2)
				if (grow(s)) {
					s->overflow = true;
					break;
				}
		if (s->n + n > MAX_KEYS)
			s->overflow = true;
	}
	bool track = s && !s->overflow;
	for (size_t i = 0; i < n; i++) {
		tlcm_MetricEntry_table_t e = tlcm_Metrics_entries_at(m, i);
		const char *key = tlcm_MetricEntry_key(e);
		size_t kl = tlcm_MetricEntry_key_len(e);
		const char *str = tlcm_MetricEntry_str(e);
		size_t slen = tlcm_MetricEntry_str_len(e);
		double num = tlcm_MetricEntry_num(e);
		if (sensitive(o, key, kl)) {
			str = REDACTED;
			slen = strlen(REDACTED);
			num = 0;
		}
		bool removed = tlcm_MetricEntry_removed(e) && !in_full;
		slot_t *sl = track ? lookup(s, key, kl) : NULL;
		bool changed = !sl || !sl->key || removed != sl->gone ||
			       (!removed && !same(sl, str, slen, num));
		if (f ? !removed : changed)
			refs[k++] = entry(b, key, kl, str, slen, num, removed);
		if (!sl)
			continue;
		if (removed) {
			if (sl->key) {
				sl->gone = true;
				sl->gen = s->gen;
			}
		} else {
			remember(s, sl, key, kl, str, slen, num);
			track = !s->overflow;
		}
	}
	if (track && in_full) {
		/* keys the source no longer reports */
		for (size_t i = 0; i < s->cap; i++) {
			slot_t *sl = &s->slots[i];
			if (!sl->key || sl->gone || sl->gen == s->gen)
				continue;
			sl->gone = true;
			if (!f)
				refs[k++] = entry(b, sl->key, sl->klen, NULL,
						  0, 0, true);
		}
	}
	if (s && s->overflow)
		table_clear(s);
	tlcm_fbb_ref_t ev = tlcm_Metrics_entries_create(b, refs, k);
	free(refs);
	tlcm_fbb_ref_t src = sname ? tlcm_fbb_string(
		b, sname, tlcm_Metrics_source_len(m)) : 0;
	tlcm_Metrics_start(b);
	tlcm_Metrics_add_time_ns(b, tlcm_Metrics_time_ns(m));
	if (src)
		tlcm_Metrics_add_source(b, src);
	tlcm_Metrics_add_seq(b, tlcm_Metrics_seq(m));
	tlcm_Metrics_add_full(b, f);
	tlcm_Metrics_add_entries(b, ev);
	*out = tlcm_Metrics_finish(b, tlcm_Metrics_end(b), outlen);
	if (!*out)
		return tlcm_fbb_error(b) ? tlcm_fbb_error(b) : TLCM_ENOMEM;
	if (s) {
		s->fresh = false;
		if (f)
			s->full_pkg = pkg_no;
	}
	*full = f;
	return 0;
}
