/* export.h — the core's records as JSON lines, for `tinylcm core export`
 * (engine/cli/main.c parses the arguments and opens the store; what the
 * records are is known here only). One object per line and record:
 *
 *   {"kind": "drift", "record": {…the fields GET /drift/events/{id} has…}}
 *
 * kinds, in the order they are written: devices packages drift samples
 * images metrics logs feedback models telemetry (docs/api.md, Export).
 */
#ifndef TLCM_NODES_CORE_EXPORT_H
#define TLCM_NODES_CORE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/store.h"

#define TLCM_CORE_NKINDS 10

typedef struct tlcm_core_export_opts {
	unsigned kinds;        /* bit i: kind i (tlcm_core_kind_name); 0: all */
	const char *device;    /* only this device's records; NULL: all */
	uint64_t since_ns;     /* only records of this time or later; 0: all */
	bool no_blobs;         /* leave out the bytes (package bodies,
				  images, thumbnails, model files) */
} tlcm_core_export_opts_t;

/* The name of kind i (NULL past the last). */
const char *tlcm_core_kind_name(unsigned i);

/* Parse "drift,samples" into kind bits; TLCM_EINVAL with why naming the
 * unknown kind (and the known ones). */
int tlcm_core_kinds_parse(const char *list, unsigned *kinds, char *why,
			  size_t cap);

/* Write the records of store s to out; counts[i] (may be NULL) receives
 * the lines of kind i. TLCM_ENOENT when s holds no core records (the
 * store of another graph), TLCM_EINVAL for a bad device id, TLCM_EIO
 * when out fails; why says what and where. */
int tlcm_core_export(tlcm_store_t *s, const tlcm_core_export_opts_t *o,
		     FILE *out, uint64_t counts[TLCM_CORE_NKINDS], char *why,
		     size_t cap);

#endif
