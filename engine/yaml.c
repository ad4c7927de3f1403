/* yaml.c — libfyaml events → a positioned tree (see yaml.h).
 *
 * The event parser gives a start mark for every node, which libfyaml's
 * document API (0.7) does not expose for mappings and sequences. A stack of
 * open collections receives the nodes as their events arrive.
 */
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/yaml.h"

#define MAX_DEPTH 64

const char *tlcm_yaml_kind_name(tlcm_ykind_t k)
{
	return k == TLCM_Y_SCALAR ? "a scalar" : k == TLCM_Y_MAP ? "a mapping"
								 : "a list";
}

void tlcm_yaml_free(tlcm_ynode_t *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nitems; i++)
		tlcm_yaml_free(n->items[i]);
	free(n->items);
	free(n->str);
	free(n);
}

tlcm_ynode_t *tlcm_yaml_get(const tlcm_ynode_t *map, const char *key)
{
	if (!map || map->kind != TLCM_Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		tlcm_ynode_t *k = tlcm_yaml_key(map, i);
		if (k->kind == TLCM_Y_SCALAR && strcmp(k->str, key) == 0)
			return tlcm_yaml_val(map, i);
	}
	return NULL;
}

/* Room for one more item in a collection. */
static int grow(tlcm_ynode_t *p)
{
	if (p->nitems < p->cap)
		return 0;
	size_t nc = p->cap ? p->cap * 2 : 8;
	tlcm_ynode_t **ni = realloc(p->items, nc * sizeof *ni);
	if (!ni)
		return -1;
	p->items = ni;
	p->cap = nc;
	return 0;
}

typedef struct {
	tlcm_ynode_t *stack[MAX_DEPTH];
	int depth;
	tlcm_ynode_t *root;
} builder_t;

static int push_item(builder_t *b, tlcm_ynode_t *node)
{
	if (b->depth == 0) {
		b->root = node;
		return 0;
	}
	tlcm_ynode_t *p = b->stack[b->depth - 1];
	if (grow(p))
		return -1;
	p->items[p->nitems++] = node;
	p->n = p->kind == TLCM_Y_MAP ? p->nitems / 2 : p->nitems;
	return 0;
}

static void set_err(char *err, size_t errlen, int line, int col,
		    const char *msg)
{
	snprintf(err, errlen, "%d:%d: %s", line, col, msg);
}

/* Is the next item of the open collection a mapping key? */
static bool key_position(const builder_t *b)
{
	return b->depth > 0 && b->stack[b->depth - 1]->kind == TLCM_Y_MAP &&
	       b->stack[b->depth - 1]->nitems % 2 == 0;
}

/* Keys must be plain scalars and unique within their mapping (YAML says
 * duplicates are an error; silently taking one would surprise). */
static bool bad_key(const builder_t *b, const tlcm_ynode_t *key, char *err,
		    size_t errlen)
{
	char msg[300];
	if (key->kind != TLCM_Y_SCALAR) {
		snprintf(msg, sizeof msg, "mapping keys must be plain names, "
			 "not %s", tlcm_yaml_kind_name(key->kind));
		set_err(err, errlen, key->line, key->col, msg);
		return true;
	}
	const tlcm_ynode_t *map = b->stack[b->depth - 1];
	for (size_t i = 0; i < map->nitems; i += 2)
		if (strcmp(map->items[i]->str, key->str) == 0) {
			snprintf(msg, sizeof msg, "duplicate key '%.100s' (first "
				 "at line %d, column %d)", key->str,
				 map->items[i]->line, map->items[i]->col);
			set_err(err, errlen, key->line, key->col, msg);
			return true;
		}
	return false;
}

static tlcm_ynode_t *parse(struct fy_parser *fyp, struct fy_diag *diag,
			   char *err, size_t errlen)
{
	builder_t b = {0};
	struct fy_event *ev;
	bool bad = false;
	int docs = 0;
	while (!bad && (ev = fy_parser_parse(fyp)) != NULL) {
		const struct fy_mark *mk = fy_event_start_mark(ev);
		int line = mk ? mk->line + 1 : 0, col = mk ? mk->column + 1 : 0;
		tlcm_ynode_t *node = NULL;
		switch (ev->type) {
		case FYET_DOCUMENT_START:
			if (++docs > 1) {
				set_err(err, errlen, line, col,
					"only one YAML document is allowed");
				bad = true;
			}
			break;
		case FYET_SCALAR:
		case FYET_MAPPING_START:
		case FYET_SEQUENCE_START: {
			struct fy_token *anchor =
				ev->type == FYET_SCALAR ? ev->scalar.anchor
				: ev->type == FYET_MAPPING_START
					? ev->mapping_start.anchor
					: ev->sequence_start.anchor;
			if (anchor) {
				set_err(err, errlen, line, col,
					"YAML anchors and aliases are not "
					"supported in graph files");
				bad = true;
				break;
			}
			node = calloc(1, sizeof *node);
			if (!node) {
				set_err(err, errlen, line, col, "out of memory");
				bad = true;
				break;
			}
			node->line = line;
			node->col = col;
			if (ev->type == FYET_SCALAR) {
				size_t len;
				const char *t = fy_token_get_text(
					ev->scalar.value, &len);
				node->kind = TLCM_Y_SCALAR;
				node->str = strndup(t ? t : "", t ? len : 0);
				node->quoted = fy_token_scalar_style(
						       ev->scalar.value) !=
					       FYSS_PLAIN;
				if (!node->str || memchr(t ? t : "", 0,
							 t ? len : 0)) {
					set_err(err, errlen, line, col,
						"scalar contains a NUL byte");
					tlcm_yaml_free(node);
					bad = true;
					break;
				}
			} else {
				node->kind = ev->type == FYET_MAPPING_START
						     ? TLCM_Y_MAP
						     : TLCM_Y_SEQ;
			}
			if (key_position(&b) &&
			    bad_key(&b, node, err, errlen)) {
				tlcm_yaml_free(node);
				bad = true;
				break;
			}
			if (push_item(&b, node)) {
				tlcm_yaml_free(node);
				set_err(err, errlen, line, col, "out of memory");
				bad = true;
				break;
			}
			if (node->kind != TLCM_Y_SCALAR) {
				if (b.depth == MAX_DEPTH) {
					set_err(err, errlen, line, col,
						"nesting deeper than 64 levels");
					bad = true;
					break;
				}
				b.stack[b.depth++] = node;
			}
			break;
		}
		case FYET_MAPPING_END:
		case FYET_SEQUENCE_END:
			if (b.depth > 0)
				b.depth--;
			break;
		case FYET_ALIAS:
			set_err(err, errlen, line, col,
				"YAML anchors and aliases are not supported "
				"in graph files");
			bad = true;
			break;
		default:
			break;
		}
		fy_parser_event_free(fyp, ev);
	}
	if (!bad && fy_parser_get_stream_error(fyp)) {
		void *it = NULL;
		struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
		if (de)
			set_err(err, errlen, de->line, de->column, de->msg);
		else
			set_err(err, errlen, 0, 0, "invalid YAML");
		bad = true;
	}
	if (!bad && !b.root) {
		set_err(err, errlen, 1, 1, "the file is empty");
		bad = true;
	}
	if (bad) {
		tlcm_yaml_free(b.root);
		return NULL;
	}
	return b.root;
}

static tlcm_ynode_t *load(const char *path, const char *text, size_t len,
			  char *err, size_t errlen)
{
	struct fy_diag_cfg dcfg;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.colorize = false;
	struct fy_diag *diag = fy_diag_create(&dcfg);
	if (!diag) {
		snprintf(err, errlen, "0:0: out of memory");
		return NULL;
	}
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG,
				   .diag = diag};
	struct fy_parser *fyp = fy_parser_create(&cfg);
	tlcm_ynode_t *root = NULL;
	if (!fyp) {
		snprintf(err, errlen, "0:0: out of memory");
	} else if (path ? fy_parser_set_input_file(fyp, path)
			: fy_parser_set_string(fyp, text, len)) {
		snprintf(err, errlen, "0:0: cannot read the file");
	} else {
		root = parse(fyp, diag, err, errlen);
	}
	if (fyp)
		fy_parser_destroy(fyp);
	fy_diag_destroy(diag);
	return root;
}

tlcm_ynode_t *tlcm_yaml_load(const char *path, char *err, size_t errlen)
{
	return load(path, NULL, 0, err, errlen);
}

tlcm_ynode_t *tlcm_yaml_load_string(const char *text, size_t len, char *err,
				    size_t errlen)
{
	return load(NULL, text, len, err, errlen);
}
