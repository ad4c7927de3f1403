/* yaml.h — a small YAML document tree with positions, for graph files.
 *
 * libfyaml parses; this module keeps what graph loading needs: scalars,
 * mappings and sequences, each with its 1-based line and column, so every
 * validation error can say file:line:col. Anchors, aliases and multiple
 * documents are refused with a positioned error (graph files do not need
 * them, and refusing keeps expansion bombs out).
 */
#ifndef TLCM_YAML_H
#define TLCM_YAML_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { TLCM_Y_SCALAR, TLCM_Y_MAP, TLCM_Y_SEQ } tlcm_ykind_t;

typedef struct tlcm_ynode {
	tlcm_ykind_t kind;
	int line, col;
	char *str;     /* scalar text (NUL-terminated), else NULL */
	bool quoted;   /* scalar was quoted */
	struct tlcm_ynode **items; /* map: key, value, key, value...; seq */
	size_t n;                  /* entries (pairs for maps) */
	size_t nitems, cap;        /* items stored, allocated */
} tlcm_ynode_t;

/* Parse path. On error returns NULL and writes "line:col: message" to err. */
tlcm_ynode_t *tlcm_yaml_load(const char *path, char *err, size_t errlen);
tlcm_ynode_t *tlcm_yaml_load_string(const char *text, size_t len, char *err,
				    size_t errlen);
void tlcm_yaml_free(tlcm_ynode_t *n);

/* Map lookup by key, NULL when absent or n is not a map. */
tlcm_ynode_t *tlcm_yaml_get(const tlcm_ynode_t *map, const char *key);
static inline tlcm_ynode_t *tlcm_yaml_key(const tlcm_ynode_t *m, size_t i)
{
	return m->items[2 * i];
}
static inline tlcm_ynode_t *tlcm_yaml_val(const tlcm_ynode_t *m, size_t i)
{
	return m->items[2 * i + 1];
}
const char *tlcm_yaml_kind_name(tlcm_ykind_t k);

#endif
