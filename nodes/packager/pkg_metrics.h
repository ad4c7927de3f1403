/* pkg_metrics.h — what the packager does to Metrics before it keeps them:
 * sanitising (sensitive keys → "REDACTED", at any depth of the dotted
 * path) and incremental metrics (only the entries that changed since the
 * previous Metrics of the same source, with a full snapshot in every
 * full_every-th metrics package and whenever the state was reset).
 *
 * The state remembers, per source (Metrics.source), the last value of
 * every key as it was written into a package: so a delta is always
 * against what the packages already say. A source with more than
 * MAX_KEYS keys, or more than MAX_SOURCES sources, gets full snapshots
 * only (bounded memory).
 */
#ifndef TLCM_PKG_METRICS_H
#define TLCM_PKG_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/fb/fb.h"

typedef struct tlcm_mstate tlcm_mstate_t;

typedef struct tlcm_mopts {
	const char *const *sensitive; /* key names, see tlcm_key_sensitive */
	size_t nsensitive;
	bool incremental;
	unsigned full_every; /* packages; 0: only the first after a reset */
} tlcm_mopts_t;

tlcm_mstate_t *tlcm_mstate_new(void);
void tlcm_mstate_free(tlcm_mstate_t *st);
/* Forget every value: the next Metrics of each source is full (after a
 * restart, a lost item, a dropped metrics package). */
void tlcm_mstate_reset(tlcm_mstate_t *st);

/* Rewrite the verified Metrics msg into b (a heap builder, reset here)
 * for the metrics package number pkg_no (0, 1, ...): out and outlen point
 * at the finished message inside b. TLCM_EBADMSG with why for content
 * the package must not carry: an empty key or one over 200 bytes, a key
 * twice in one message. *full tells what was written. */
int tlcm_metrics_rewrite(tlcm_mstate_t *st, const tlcm_mopts_t *o,
			 const void *msg, uint64_t pkg_no, tlcm_fbb_t *b,
			 const void **out, size_t *outlen, bool *full,
			 char *why, size_t whylen);

#endif
