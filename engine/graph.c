/* graph.c — graph files: registry, parameter parsing, loading, validation,
 * dot output (see graph.h).
 *
 * Loading is one pass over the YAML tree that records every problem with
 * its position and keeps going, so a user sees all mistakes at once; the
 * graph is returned only when there were none.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "engine/graph.h"
#include "engine/profile.h"
#include "engine/store.h"
#include "engine/yaml.h"

#define MAX_DIAGS 50

/* ---- registry ------------------------------------------------------------ */

static const tlcm_node_type_t *find_added(const tlcm_registry_t *r,
					  const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->types[i]->name, name) == 0)
			return r->types[i];
	return NULL;
}

int tlcm_registry_add(tlcm_registry_t *r, const tlcm_node_type_t *t)
{
	if (!t || !t->name || find_added(r, t->name))
		return TLCM_EEXIST;
	if (r->n == r->cap) {
		size_t nc = r->cap ? 2 * r->cap : 16;
		const tlcm_node_type_t **nt = realloc(r->types, nc * sizeof *nt);
		if (!nt)
			return TLCM_ENOMEM;
		r->types = nt;
		r->cap = nc;
	}
	r->types[r->n++] = t;
	return 0;
}

const tlcm_node_type_t *tlcm_registry_find(const tlcm_registry_t *r,
					   const char *name)
{
	const tlcm_node_type_t *t = find_added(r, name);
	if (!t && r->resolve && r->resolve((tlcm_registry_t *)r, name) == 0)
		t = find_added(r, name);
	return t;
}

void tlcm_registry_fini(tlcm_registry_t *r)
{
	free(r->types);
	memset(r, 0, sizeof *r);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < c)
				c = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < c)
				c = d[i][j - 1] + 1;
			d[i][j] = c;
		}
	return d[la][lb];
}

const char *tlcm_suggest(const char *name, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t bd = 3;
	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(name, cands[i]);
		if (d < bd || (!best && strncmp(cands[i], name, strlen(name)) ==
						0 && *name)) {
			bd = d < bd ? d : bd;
			best = cands[i];
		}
	}
	return best;
}

/* ---- diagnostics --------------------------------------------------------- */

void tlcm_diag_add(tlcm_diag_t *d, const char *file, int line, int col,
		   const char *fmt, ...)
{
	if (d->n >= MAX_DIAGS)
		return;
	char msg[768], *s;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int rc = line > 0 ? asprintf(&s, "%s:%d:%d: %s", file, line, col, msg)
			  : asprintf(&s, "%s: %s", file, msg);
	if (rc < 0)
		return;
	char **nm = realloc(d->msgs, (d->n + 1) * sizeof *nm);
	if (!nm) {
		free(s);
		return;
	}
	d->msgs = nm;
	d->msgs[d->n++] = s;
}

void tlcm_diag_print(const tlcm_diag_t *d, FILE *f)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(f, "%s\n", d->msgs[i]);
	if (d->n >= MAX_DIAGS)
		fprintf(f, "(stopped after %d problems)\n", MAX_DIAGS);
}

void tlcm_diag_fini(tlcm_diag_t *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i]);
	free(d->msgs);
	memset(d, 0, sizeof *d);
}

/* ---- parameters ---------------------------------------------------------- */

static const char *type_names[] = {"int",  "float",    "bool", "string",
				   "enum", "list",     "duration",
				   "size", "path",     "secret"};

const char *tlcm_param_type_name(tlcm_param_type_t t)
{
	return (unsigned)t < 10 ? type_names[t] : "?";
}

typedef struct {
	const char *unit;
	double mul;
} unit_t;

/* A non-negative number followed by one of units (spaces allowed between);
 * whole: the result must be an integer. */
static int parse_units(const char *s, const unit_t *units, size_t nunits,
		       bool whole, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !(v >= 0) || isinf(v))
		return TLCM_EINVAL;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < nunits; i++)
		if (strcmp(end, units[i].unit) == 0) {
			double x = v * units[i].mul;
			if (x > 1.8e19 || (whole && x != floor(x)))
				return TLCM_EINVAL;
			*out = (uint64_t)(whole ? x : x + 0.5);
			return 0;
		}
	return TLCM_EINVAL;
}

int tlcm_parse_duration(const char *s, uint64_t *ns)
{
	static const unit_t units[] = {
		{"ns", 1},     {"us", 1e3},    {"ms", 1e6},     {"s", 1e9},
		{"m", 60e9},   {"min", 60e9},  {"h", 3600e9},   {"d", 86400e9}};
	if (strcmp(s, "0") == 0) { /* the one duration without a unit */
		*ns = 0;
		return 0;
	}
	return parse_units(s, units, sizeof units / sizeof units[0], false, ns);
}

int tlcm_parse_size(const char *s, uint64_t *bytes)
{
	static const unit_t units[] = {
		{"", 1},         {"B", 1},    {"KiB", 1024.0},
		{"MiB", 1048576.0}, {"GiB", 1073741824.0},
		{"kB", 1e3},     {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}};
	return parse_units(s, units, sizeof units / sizeof units[0], true,
			   bytes);
}

/* Is word (len bytes) one of the '|'-separated items of list? */
static bool bar_list_has(const char *list, const char *word, size_t len)
{
	for (const char *p = list; *p;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == len && strncmp(p, word, len) == 0)
			return true;
		p += l + (bar ? 1 : 0);
	}
	return false;
}

void tlcm_pval_clear(tlcm_pval_t *v)
{
	free(v->text);
	for (size_t i = 0; i < v->nlist; i++)
		free(v->list[i]);
	free(v->list);
	const tlcm_param_desc_t *d = v->d;
	memset(v, 0, sizeof *v);
	v->d = d;
}

const char *tlcm_param_display(const tlcm_pval_t *v)
{
	if (v->d && v->d->type == TLCM_P_SECRET)
		return "***";
	return v->text ? v->text : "";
}

static bool ranged(const tlcm_param_desc_t *d)
{
	return d->min != 0 || d->max != 0;
}

static int range_check(const tlcm_param_desc_t *d, double x, char *why,
		       size_t n)
{
	if (ranged(d) && (x < d->min || x > d->max)) {
		/* whole numbers in full, not 1.04858e+06 */
		const char *f = d->type == TLCM_P_FLOAT
					? "%g is outside the allowed range %g..%g"
					: "%.0f is outside the allowed range "
					  "%.0f..%.0f";
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(why, n, f, x, d->min, d->max);
#pragma GCC diagnostic pop
		if (d->type == TLCM_P_SIZE)
			strncat(why, " bytes", n - strlen(why) - 1);
		else if (d->type == TLCM_P_DURATION)
			strncat(why, " ns", n - strlen(why) - 1);
		return TLCM_EINVAL;
	}
	return 0;
}

int tlcm_param_parse(const tlcm_param_desc_t *d, const char *text,
		     tlcm_pval_t *out, char *why, size_t n)
{
	tlcm_pval_clear(out);
	out->d = d;
	char *end;
	switch (d->type) {
	case TLCM_P_INT: {
		errno = 0;
		/* decimal (a leading 0 is not octal, as in YAML 1.2) or 0x.. */
		bool hex = (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) ||
			   (text[0] == '-' && text[1] == '0' &&
			    (text[2] == 'x' || text[2] == 'X'));
		long long v = strtoll(text, &end, hex ? 16 : 10);
		if (end == text || *end || errno) {
			snprintf(why, n, "'%s' is not an integer", text);
			return TLCM_EINVAL;
		}
		if (range_check(d, (double)v, why, n))
			return TLCM_EINVAL;
		out->i = v;
		break;
	}
	case TLCM_P_FLOAT: {
		errno = 0;
		double v = strtod(text, &end);
		if (end == text || *end || errno || isnan(v)) {
			snprintf(why, n, "'%s' is not a number", text);
			return TLCM_EINVAL;
		}
		if (range_check(d, v, why, n))
			return TLCM_EINVAL;
		out->f = v;
		break;
	}
	case TLCM_P_BOOL: {
		static const char *t[] = {"true", "yes", "on", "1"};
		static const char *f[] = {"false", "no", "off", "0"};
		int val = -1;
		for (int i = 0; i < 4; i++) {
			if (strcasecmp(text, t[i]) == 0)
				val = 1;
			if (strcasecmp(text, f[i]) == 0)
				val = 0;
		}
		if (val < 0) {
			snprintf(why, n, "'%s' is not a boolean (true or "
				 "false)", text);
			return TLCM_EINVAL;
		}
		out->b = val;
		break;
	}
	case TLCM_P_ENUM: {
		const char *c = d->choices ? d->choices : "";
		if (!bar_list_has(c, text, strlen(text))) {
			snprintf(why, n, "'%s' is not one of %s", text, c);
			return TLCM_EINVAL;
		}
		break;
	}
	case TLCM_P_DURATION:
		if (tlcm_parse_duration(text, &out->u)) {
			snprintf(why, n, "'%s' is not a duration (e.g. 250ms, "
				 "1.5s, 2m, 1h)", text);
			return TLCM_EINVAL;
		}
		if (range_check(d, (double)out->u, why, n))
			return TLCM_EINVAL;
		break;
	case TLCM_P_SIZE:
		if (tlcm_parse_size(text, &out->u)) {
			snprintf(why, n, "'%s' is not a size (e.g. 512, 64KiB, "
				 "1MiB)", text);
			return TLCM_EINVAL;
		}
		if (range_check(d, (double)out->u, why, n))
			return TLCM_EINVAL;
		break;
	case TLCM_P_LIST: {
		/* comma-separated text (YAML lists are joined with commas) */
		const char *p = text;
		while (*p) {
			const char *comma = strchr(p, ',');
			size_t l = comma ? (size_t)(comma - p) : strlen(p);
			while (l && isspace((unsigned char)*p)) {
				p++;
				l--;
			}
			while (l && isspace((unsigned char)p[l - 1]))
				l--;
			char **nl = realloc(out->list,
					    (out->nlist + 1) * sizeof *nl);
			if (!nl)
				return TLCM_ENOMEM;
			out->list = nl;
			out->list[out->nlist++] = strndup(p, l);
			if (!comma)
				break;
			p = comma + 1;
		}
		break;
	}
	default: /* string, path, secret */
		break;
	}
	out->text = strdup(text);
	return out->text ? 0 : TLCM_ENOMEM;
}

/* ---- loading ------------------------------------------------------------- */

typedef struct {
	const char *file;
	tlcm_diag_t *diag;
	const tlcm_registry_t *reg;
	tlcm_graph_t *g;
	const tlcm_ynode_t **node_yaml; /* per graph node */
	bool no_env;    /* variables take their defaults (load_text) */
} loader_t;

#define ERR(L, N, ...) \
	tlcm_diag_add((L)->diag, (L)->file, (N) ? (N)->line : 0, \
		      (N) ? (N)->col : 0, __VA_ARGS__)

/* ${VAR} and ${VAR:-default} expansion. NULL (and a diagnostic) on error. */
static char *expand(loader_t *L, const tlcm_ynode_t *n)
{
	const char *s = n->str;
	size_t cap = strlen(s) + 64, len = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	while (*s) {
		const char *piece;
		size_t pl;
		char *tmp = NULL;
		if (s[0] == '$' && s[1] == '{') {
			const char *close = strchr(s, '}');
			if (!close) {
				ERR(L, n, "unterminated ${ in '%s'", n->str);
				free(out);
				return NULL;
			}
			const char *dflt = NULL;
			size_t nl = (size_t)(close - s - 2);
			const char *sep = memmem(s + 2, nl, ":-", 2);
			if (sep) {
				dflt = sep + 2;
				nl = (size_t)(sep - s - 2);
			}
			char name[128];
			if (nl == 0 || nl >= sizeof name) {
				ERR(L, n, "bad variable name in '%s'", n->str);
				free(out);
				return NULL;
			}
			memcpy(name, s + 2, nl);
			name[nl] = 0;
			const char *val = L->no_env ? NULL : getenv(name);
			if ((!val || !*val) && dflt) {
				tmp = strndup(dflt, (size_t)(close - dflt));
				val = tmp;
			}
			if (!val && L->no_env) {
				ERR(L, n, "variable %s has no default: a graph "
				    "checked away from its device must give one "
				    "(${%s:-default}; the device's environment "
				    "still sets it)", name, name);
				free(out);
				return NULL;
			}
			if (!val) {
				ERR(L, n, "environment variable %s is not set "
				    "(write ${%s:-default} to give a default)",
				    name, name);
				free(out);
				return NULL;
			}
			piece = val;
			pl = strlen(val);
			s = close + 1;
		} else {
			piece = s;
			pl = 1;
			s++;
		}
		if (len + pl + 1 > cap) {
			cap = 2 * (len + pl + 1);
			char *no = realloc(out, cap);
			if (!no) {
				free(out);
				free(tmp);
				return NULL;
			}
			out = no;
		}
		memcpy(out + len, piece, pl);
		len += pl;
		free(tmp);
	}
	out[len] = 0;
	return out;
}

/* A scalar's expanded text; a list is joined with commas (for list
 * params). NULL with a diagnostic when the node has the wrong shape. */
static char *scalar_text(loader_t *L, const tlcm_ynode_t *n, bool allow_list,
			 const char *what)
{
	if (n->kind == TLCM_Y_SCALAR)
		return expand(L, n);
	if (allow_list && n->kind == TLCM_Y_SEQ) {
		size_t cap = 16, len = 0;
		char *out = calloc(1, cap);
		for (size_t i = 0; out && i < n->n; i++) {
			const tlcm_ynode_t *it = n->items[i];
			if (it->kind != TLCM_Y_SCALAR) {
				ERR(L, it, "%s: list items must be scalars",
				    what);
				free(out);
				return NULL;
			}
			char *t = expand(L, it);
			if (!t) {
				free(out);
				return NULL;
			}
			size_t tl = strlen(t);
			if (len + tl + 2 > cap) {
				cap = 2 * (len + tl + 2);
				char *no = realloc(out, cap);
				if (!no) {
					free(t);
					free(out);
					return NULL;
				}
				out = no;
			}
			if (i)
				out[len++] = ',';
			memcpy(out + len, t, tl + 1);
			len += tl;
			free(t);
		}
		return out;
	}
	ERR(L, n, "%s: expected %s, found %s", what,
	    allow_list ? "a value or a list" : "a value",
	    tlcm_yaml_kind_name(n->kind));
	return NULL;
}

static void unknown_key(loader_t *L, const tlcm_ynode_t *key,
			const char *where, const char *const *allowed,
			size_t n)
{
	const char *s = tlcm_suggest(key->str, allowed, n);
	char list[256] = "";
	for (size_t i = 0; i < n; i++) {
		strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
		strncat(list, allowed[i], sizeof list - strlen(list) - 1);
	}
	if (s)
		ERR(L, key, "unknown key '%s' in %s (did you mean '%s'?)",
		    key->str, where, s);
	else
		ERR(L, key, "unknown key '%s' in %s (expected one of: %s)",
		    key->str, where, list);
}

static bool valid_id(const char *s)
{
	if (!(isalpha((unsigned char)*s) || *s == '_'))
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
			return false;
	return true;
}

static void load_settings(loader_t *L, const tlcm_ynode_t *n)
{
	static const char *keys[] = {"workers", "store", "sync",
				     "sync_interval", "keep", "introspect",
				     "fresh_store"};
	if (n->kind != TLCM_Y_MAP) {
		ERR(L, n, "settings: expected a mapping, found %s",
		    tlcm_yaml_kind_name(n->kind));
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		const tlcm_ynode_t *k = tlcm_yaml_key(n, i), *v = tlcm_yaml_val(n, i);
		if (strcmp(k->str, "workers") == 0) {
			char *t = scalar_text(L, v, false, "settings.workers");
			char *end;
			long w = t ? strtol(t, &end, 10) : 0;
			if (t && (*end || end == t || w < 0 || w > 256))
				ERR(L, v, "settings.workers: '%s' is not a "
				    "thread count 0..256 (0: one per core)", t);
			else if (t)
				L->g->workers = (int)w;
			L->g->workers_given = true;
			free(t);
		} else if (strcmp(k->str, "store") == 0) {
			free(L->g->store);
			L->g->store = scalar_text(L, v, false, "settings.store");
		} else if (strcmp(k->str, "fresh_store") == 0) {
			char *t = scalar_text(L, v, false,
					      "settings.fresh_store");
			if (t && strcmp(t, "true") && strcmp(t, "false"))
				ERR(L, v, "settings.fresh_store: '%s' is not "
				    "true or false", t);
			else if (t)
				L->g->fresh_store = !strcmp(t, "true");
			free(t);
		} else if (strcmp(k->str, "sync") == 0) {
			char *t = scalar_text(L, v, false, "settings.sync");
			tlcm_sync_t sy;
			if (t && tlcm_sync_parse(t, &sy))
				ERR(L, v, "settings.sync: '%s' is not one of "
				    "always, batch, never", t);
			else if (t)
				L->g->sync = (int)sy;
			free(t);
		} else if (strcmp(k->str, "sync_interval") == 0) {
			char *t = scalar_text(L, v, false,
					      "settings.sync_interval");
			uint64_t ns;
			if (t && (tlcm_parse_duration(t, &ns) || ns < 1000000 ||
				  ns > 60000000000ull))
				ERR(L, v, "settings.sync_interval: '%s' is not a "
				    "duration from 1ms to 60s", t);
			else if (t)
				L->g->sync_interval = ns;
			free(t);
		} else if (strcmp(k->str, "keep") == 0) {
			char *t = scalar_text(L, v, false, "settings.keep");
			char *end;
			long kp = t ? strtol(t, &end, 10) : 0;
			if (t && (*end || end == t || kp < 1 || kp > 1000))
				ERR(L, v, "settings.keep: '%s' is not a number "
				    "of versions 1..1000", t);
			else if (t)
				L->g->keep = (unsigned)kp;
			free(t);
		} else if (strcmp(k->str, "introspect") == 0) {
			char *t = scalar_text(L, v, false, "settings.introspect");
			if (t && strcmp(t, "off") && strncmp(t, "http://", 7))
				ERR(L, v, "settings.introspect: '%s' is not "
				    "'off' or an http://HOST:PORT address", t);
			free(L->g->introspect);
			L->g->introspect = t;
		} else {
			unknown_key(L, k, "settings", keys, 7);
		}
	}
}

static const tlcm_param_desc_t *find_param(const tlcm_node_type_t *t,
					   const char *name, size_t *idx)
{
	for (size_t i = 0; t->params && t->params[i].name; i++)
		if (strcmp(t->params[i].name, name) == 0) {
			*idx = i;
			return &t->params[i];
		}
	return NULL;
}

static size_t count_ports(const tlcm_port_desc_t *p)
{
	size_t n = 0;
	while (p && p[n].name)
		n++;
	return n;
}

static void set_param(loader_t *L, tlcm_gnode_t *gn, const tlcm_ynode_t *at,
		      const char *name, const char *text, const char *origin)
{
	size_t idx;
	const tlcm_param_desc_t *d = find_param(gn->type, name, &idx);
	if (!d) {
		const char *cands[64];
		size_t nc = 0;
		for (size_t i = 0; nc < 64 && gn->type->params &&
				   gn->type->params[i].name;
		     i++)
			cands[nc++] = gn->type->params[i].name;
		const char *s = tlcm_suggest(name, cands, nc);
		if (origin)
			tlcm_diag_add(L->diag, origin, 0, 0,
				      "node '%s' (type %s) has no parameter "
				      "'%s'%s%s%s", gn->id, gn->type->name,
				      name, s ? " (did you mean '" : "",
				      s ? s : "", s ? "'?)" : "");
		else
			ERR(L, at, "node '%s' (type %s) has no parameter '%s'"
			    "%s%s%s", gn->id, gn->type->name, name,
			    s ? " (did you mean '" : "", s ? s : "",
			    s ? "'?)" : "");
		return;
	}
	char why[300];
	if (tlcm_param_parse(d, text, &gn->params[idx], why, sizeof why)) {
		const char *shown = d->type == TLCM_P_SECRET ? "***" : why;
		if (origin)
			tlcm_diag_add(L->diag, origin, 0, 0,
				      "%s.%s (%s): %s", gn->id, name,
				      tlcm_param_type_name(d->type), shown);
		else
			ERR(L, at, "%s.%s (%s): %s", gn->id, name,
			    tlcm_param_type_name(d->type), shown);
		return;
	}
	gn->params[idx].given = true;
	gn->params[idx].from = origin ? TLCM_FROM_SET : TLCM_FROM_FILE;
}

static void load_node(loader_t *L, const tlcm_ynode_t *key,
		      const tlcm_ynode_t *v)
{
	static const char *keys[] = {"type", "params", "thread", "cpu",
				     "on_error", "isolate"};
	tlcm_graph_t *g = L->g;
	if (!valid_id(key->str)) {
		ERR(L, key, "node id '%s' must start with a letter or '_' and "
		    "hold only letters, digits, '_' and '-'", key->str);
		return;
	}
	for (size_t i = 0; i < g->nnodes; i++)
		if (strcmp(g->nodes[i].id, key->str) == 0) {
			ERR(L, key, "duplicate node id '%s' (first defined at "
			    "line %d)", key->str, g->nodes[i].line);
			return;
		}
	if (v->kind != TLCM_Y_MAP) {
		ERR(L, v, "node '%s': expected a mapping with a 'type', found "
		    "%s", key->str, tlcm_yaml_kind_name(v->kind));
		return;
	}
	const tlcm_ynode_t *tn = tlcm_yaml_get(v, "type");
	if (!tn || tn->kind != TLCM_Y_SCALAR) {
		ERR(L, tn ? tn : v, "node '%s': 'type' must name a node type",
		    key->str);
		return;
	}
	const tlcm_node_type_t *t = tlcm_registry_find(L->reg, tn->str);
	if (!t) {
		const char *cands[256];
		size_t nc = 0;
		for (size_t i = 0; i < L->reg->n && nc < 256; i++)
			cands[nc++] = L->reg->types[i]->name;
		const char *s = tlcm_suggest(tn->str, cands, nc);
		ERR(L, tn, "unknown node type '%s'%s%s%s (see `tinylcm nodes`)",
		    tn->str, s ? " (did you mean '" : "", s ? s : "",
		    s ? "'?)" : "");
		return;
	}
	tlcm_gnode_t *gn = &g->nodes[g->nnodes];
	memset(gn, 0, sizeof *gn);
	gn->id = strdup(key->str);
	gn->type = t;
	gn->line = key->line;
	gn->col = key->col;
	gn->cpu = -1;
	gn->nin = count_ports(t->inputs);
	gn->nout = count_ports(t->outputs);
	size_t np = 0;
	while (t->params && t->params[np].name)
		np++;
	gn->nparams = np;
	gn->params = calloc(np ? np : 1, sizeof *gn->params);
	for (size_t i = 0; i < np; i++)
		gn->params[i].d = &t->params[i];
	L->node_yaml[g->nnodes] = key;
	g->nnodes++;

	for (size_t i = 0; i < v->n; i++) {
		const tlcm_ynode_t *k = tlcm_yaml_key(v, i), *val = tlcm_yaml_val(v, i);
		if (strcmp(k->str, "type") == 0)
			continue;
		if (strcmp(k->str, "params") == 0) {
			if (val->kind == TLCM_Y_SCALAR && !val->quoted &&
			    (!*val->str || !strcmp(val->str, "null") ||
			     !strcmp(val->str, "~")))
				continue; /* params: (empty) */
			if (val->kind != TLCM_Y_MAP) {
				ERR(L, val, "node '%s': params must be a "
				    "mapping, found %s", gn->id,
				    tlcm_yaml_kind_name(val->kind));
				continue;
			}
			for (size_t j = 0; j < val->n; j++) {
				const tlcm_ynode_t *pk = tlcm_yaml_key(val, j);
				const tlcm_ynode_t *pv = tlcm_yaml_val(val, j);
				char what[200];
				snprintf(what, sizeof what, "%s.%s", gn->id,
					 pk->str);
				size_t idx;
				const tlcm_param_desc_t *d =
					find_param(t, pk->str, &idx);
				char *text = scalar_text(
					L, pv, d && d->type == TLCM_P_LIST, what);
				if (text)
					set_param(L, gn, pk, pk->str, text, NULL);
				free(text);
			}
		} else if (strcmp(k->str, "thread") == 0) {
			if (val->kind == TLCM_Y_SCALAR &&
			    (!strcmp(val->str, "own") || !strcmp(val->str, "pool")))
				gn->own_thread = !strcmp(val->str, "own");
			else
				ERR(L, val, "node '%s': thread must be 'own' or "
				    "'pool'", gn->id);
		} else if (strcmp(k->str, "cpu") == 0) {
			char *end;
			long c = val->kind == TLCM_Y_SCALAR
					 ? strtol(val->str, &end, 10) : -1;
			if (val->kind != TLCM_Y_SCALAR || *end || c < 0 ||
			    c > 1023)
				ERR(L, val, "node '%s': cpu must be a CPU number "
				    "0..1023", gn->id);
			else
				gn->cpu = (int)c;
		} else if (strcmp(k->str, "on_error") == 0) {
			static const char *pol[] = {"stop", "skip", "restart"};
			int p = -1;
			for (int j = 0; j < 3 && val->kind == TLCM_Y_SCALAR; j++)
				if (!strcmp(val->str, pol[j]))
					p = j;
			if (p < 0)
				ERR(L, val, "node '%s': on_error must be stop, "
				    "skip or restart", gn->id);
			else
				gn->on_error = (tlcm_on_error_t)p;
		} else if (strcmp(k->str, "isolate") == 0) {
			if (val->kind == TLCM_Y_SCALAR &&
			    (!strcmp(val->str, "process") ||
			     !strcmp(val->str, "none")))
				gn->isolate = !strcmp(val->str, "process");
			else
				ERR(L, val, "node '%s': isolate must be 'none' "
				    "or 'process'", gn->id);
		} else {
			char where[160];
			snprintf(where, sizeof where, "node '%s'", gn->id);
			unknown_key(L, k, where, keys, 6);
		}
	}
	if (gn->isolate && gn->own_thread)
		ERR(L, key, "node '%s': an isolated node already has its own "
		    "process; drop 'thread: own'", gn->id);
	if (gn->cpu >= 0 && !gn->own_thread)
		ERR(L, key, "node '%s': cpu pinning needs 'thread: own'",
		    gn->id);
}

static long find_node(const tlcm_graph_t *g, const char *id)
{
	for (size_t i = 0; i < g->nnodes; i++)
		if (strcmp(g->nodes[i].id, id) == 0)
			return (long)i;
	return -1;
}

const char *tlcm_gnode_input_name(const tlcm_gnode_t *n, size_t i)
{
	return i < n->nin ? n->type->inputs[i].name : TLCM_CONTROL_PORT;
}

/* Resolve "node.port" (or "node" when it has one port of that side). */
static bool resolve(loader_t *L, const tlcm_ynode_t *at, const char *ref,
		    bool output, size_t *node, size_t *port)
{
	tlcm_graph_t *g = L->g;
	const char *dot = strrchr(ref, '.');
	char id[128];
	size_t il = dot ? (size_t)(dot - ref) : strlen(ref);
	if (il == 0 || il >= sizeof id) {
		ERR(L, at, "'%s' is not a node.port reference", ref);
		return false;
	}
	memcpy(id, ref, il);
	id[il] = 0;
	long ni = find_node(g, id);
	if (ni < 0) {
		const char *cands[256];
		size_t nc = 0;
		for (size_t i = 0; i < g->nnodes && nc < 256; i++)
			cands[nc++] = g->nodes[i].id;
		const char *s = tlcm_suggest(id, cands, nc);
		ERR(L, at, "edge refers to unknown node '%s'%s%s%s", id,
		    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
		return false;
	}
	tlcm_gnode_t *n = &g->nodes[ni];
	const tlcm_port_desc_t *ports = output ? n->type->outputs
					       : n->type->inputs;
	size_t np = output ? n->nout : n->nin;
	if (np == 0 && (output || !dot)) {
		ERR(L, at, "node '%s' (type %s) has no %s ports%s", id,
		    n->type->name, output ? "output" : "input",
		    output ? "" : " (only 'control')");
		return false;
	}
	if (!dot) {
		if (np != 1) {
			ERR(L, at, "'%s' has %zu %s ports: name one as %s.PORT",
			    id, np, output ? "output" : "input", id);
			return false;
		}
		*node = (size_t)ni;
		*port = 0;
		return true;
	}
	const char *pn = dot + 1;
	for (size_t i = 0; i < np; i++)
		if (strcmp(ports[i].name, pn) == 0) {
			*node = (size_t)ni;
			*port = i;
			return true;
		}
	if (!output && strcmp(pn, TLCM_CONTROL_PORT) == 0) {
		*node = (size_t)ni;
		*port = n->nin;
		return true;
	}
	char list[256] = "";
	for (size_t i = 0; i < np; i++) {
		strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
		strncat(list, ports[i].name, sizeof list - strlen(list) - 1);
	}
	ERR(L, at, "node '%s' (type %s) has no %s port '%s' (%s: %s)", id,
	    n->type->name, output ? "output" : "input", pn,
	    output ? "outputs" : "inputs", np ? list : "none");
	return false;
}

static bool types_match(const char *a, const char *b)
{
	if (!a || !b || !strcmp(a, "*") || !strcmp(b, "*"))
		return true;
	for (const char *p = a; *p;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (bar_list_has(b, p, l))
			return true;
		p += l + (bar ? 1 : 0);
	}
	return false;
}

static void load_edge(loader_t *L, const tlcm_ynode_t *e)
{
	static const char *keys[] = {"from", "to", "capacity", "policy",
				     "feedback"};
	tlcm_graph_t *g = L->g;
	if (e->kind != TLCM_Y_MAP) {
		ERR(L, e, "edge: expected a mapping with 'from' and 'to', found "
		    "%s", tlcm_yaml_kind_name(e->kind));
		return;
	}
	const tlcm_profile_scale_t *ps = tlcm_profile_active();
	double cap = TLCM_DEFAULT_EDGE_CAPACITY * (ps ? ps->ring : 1.0);
	tlcm_gedge_t ed = {.capacity = cap < 4096 ? 4096 : (size_t)cap,
			   .policy = TLCM_EDGE_BLOCK,
			   .line = e->line,
			   .col = e->col};
	const tlcm_ynode_t *from = NULL, *to = NULL, *policy = NULL;
	bool ok = true;
	for (size_t i = 0; i < e->n; i++) {
		const tlcm_ynode_t *k = tlcm_yaml_key(e, i), *v = tlcm_yaml_val(e, i);
		char *t = NULL;
		if (!strcmp(k->str, "from") || !strcmp(k->str, "to")) {
			if (v->kind != TLCM_Y_SCALAR) {
				ERR(L, v, "edge.%s: expected node.port", k->str);
				ok = false;
			} else if (!strcmp(k->str, "from")) {
				from = v;
			} else {
				to = v;
			}
		} else if (!strcmp(k->str, "capacity")) {
			uint64_t b;
			t = scalar_text(L, v, false, "edge.capacity");
			if (!t || tlcm_parse_size(t, &b) || b < 4096 ||
			    b > ((uint64_t)1 << 30)) {
				if (t)
					ERR(L, v, "edge.capacity: '%s' is not a "
					    "size from 4KiB to 1GiB", t);
				ok = false;
			} else {
				ed.capacity = (size_t)b;
				ed.capacity_given = true;
			}
		} else if (!strcmp(k->str, "policy")) {
			policy = v;
			t = scalar_text(L, v, false, "edge.policy");
			if (!t || tlcm_edge_policy_parse(t, &ed.policy)) {
				if (t)
					ERR(L, v, "edge.policy: '%s' is not one "
					    "of block, drop_oldest, drop_newest",
					    t);
				ok = false;
			}
		} else if (!strcmp(k->str, "feedback")) {
			tlcm_param_desc_t bd = {.name = "feedback",
						.type = TLCM_P_BOOL};
			tlcm_pval_t pv = {0};
			char why[200];
			t = scalar_text(L, v, false, "edge.feedback");
			if (!t || tlcm_param_parse(&bd, t, &pv, why, sizeof why)) {
				if (t)
					ERR(L, v, "edge.feedback: %s", why);
				ok = false;
			}
			ed.feedback = pv.b;
			tlcm_pval_clear(&pv);
		} else {
			unknown_key(L, k, "edge", keys, 5);
			ok = false;
		}
		free(t);
	}
	if (!from || !to) {
		ERR(L, e, "edge needs both 'from' and 'to'");
		return;
	}
	/* a cycle of full block edges would wait on itself forever */
	if (ed.feedback && !policy)
		ed.policy = TLCM_EDGE_DROP_OLDEST;
	else if (ed.feedback && ed.policy == TLCM_EDGE_BLOCK) {
		ERR(L, policy, "feedback edges cannot use policy 'block' (a "
		    "cycle of full edges would wait on itself); use "
		    "drop_oldest or drop_newest");
		ok = false;
	}
	ok &= resolve(L, from, from->str, true, &ed.from, &ed.from_port);
	ok &= resolve(L, to, to->str, false, &ed.to, &ed.to_port);
	if (!ok)
		return;
	const tlcm_gnode_t *a = &g->nodes[ed.from], *b = &g->nodes[ed.to];
	const char *ot = a->type->outputs[ed.from_port].types;
	const char *it = ed.to_port < b->nin ? b->type->inputs[ed.to_port].types
					     : "CTRL";
	if (!types_match(ot, it)) {
		ERR(L, e, "edge %s -> %s: message types do not match (%s.%s "
		    "emits %s, %s.%s accepts %s)", from->str, to->str, a->id,
		    a->type->outputs[ed.from_port].name, ot, b->id,
		    tlcm_gnode_input_name(b, ed.to_port), it);
		return;
	}
	for (size_t i = 0; i < g->nedges; i++) {
		const tlcm_gedge_t *o = &g->edges[i];
		if (o->from == ed.from && o->from_port == ed.from_port &&
		    o->to == ed.to && o->to_port == ed.to_port) {
			ERR(L, e, "duplicate edge %s -> %s (first at line %d)",
			    from->str, to->str, o->line);
			return;
		}
	}
	g->edges[g->nedges++] = ed;
}

/* Depth-first search for a cycle over non-feedback edges. */
static int cycle_dfs(const tlcm_graph_t *g, size_t v, char *state,
		     size_t *stack, size_t depth, size_t *cyc_len)
{
	state[v] = 1;
	stack[depth] = v;
	for (size_t i = 0; i < g->nedges; i++) {
		const tlcm_gedge_t *e = &g->edges[i];
		if (e->from != v || e->feedback)
			continue;
		if (state[e->to] == 1) {
			size_t k = depth;
			while (stack[k] != e->to)
				k--;
			*cyc_len = depth - k + 1;
			memmove(stack, stack + k, *cyc_len * sizeof *stack);
			return (int)i;
		}
		if (state[e->to] == 0) {
			int r = cycle_dfs(g, e->to, state, stack, depth + 1,
					  cyc_len);
			if (r >= 0)
				return r;
		}
	}
	state[v] = 2;
	return -1;
}

static void check_graph(loader_t *L)
{
	tlcm_graph_t *g = L->g;
	/* required inputs */
	for (size_t i = 0; i < g->nnodes; i++) {
		const tlcm_gnode_t *n = &g->nodes[i];
		for (size_t p = 0; p < n->nin; p++) {
			if (n->type->inputs[p].flags & TLCM_PORT_OPTIONAL)
				continue;
			bool conn = false;
			for (size_t e = 0; e < g->nedges && !conn; e++)
				conn = g->edges[e].to == i &&
				       g->edges[e].to_port == p;
			if (!conn)
				ERR(L, L->node_yaml[i], "input %s.%s (%s) is not "
				    "connected; add an edge to it",
				    n->id, n->type->inputs[p].name,
				    n->type->inputs[p].types);
		}
		for (size_t p = 0; p < n->nparams; p++)
			if (!n->params[p].d->def && !n->params[p].given)
				ERR(L, L->node_yaml[i], "node '%s' (type %s) "
				    "needs parameter '%s' (%s)", n->id,
				    n->type->name, n->params[p].d->name,
				    n->params[p].d->doc ? n->params[p].d->doc
							: "");
	}
	/* cycles */
	char *state = calloc(g->nnodes + 1, 1);
	size_t *stack = calloc(g->nnodes + 1, sizeof *stack);
	for (size_t v = 0; state && stack && v < g->nnodes; v++) {
		if (state[v])
			continue;
		size_t len = 0;
		int e = cycle_dfs(g, v, state, stack, 0, &len);
		if (e >= 0) {
			char path[512] = "";
			for (size_t k = 0; k < len; k++) {
				strncat(path, g->nodes[stack[k]].id,
					sizeof path - strlen(path) - 1);
				strncat(path, " -> ",
					sizeof path - strlen(path) - 1);
			}
			strncat(path, g->nodes[stack[0]].id,
				sizeof path - strlen(path) - 1);
			tlcm_diag_add(L->diag, L->file, g->edges[e].line,
				      g->edges[e].col,
				      "cycle %s: mark one of its edges "
				      "'feedback: true'", path);
			break;
		}
	}
	free(state);
	free(stack);
}

static void apply_sets(loader_t *L, const char *const *sets, size_t nsets)
{
	for (size_t i = 0; i < nsets; i++) {
		const char *s = sets[i];
		const char *eq = strchr(s, '=');
		const char *dot = eq ? memchr(s, '.', (size_t)(eq - s)) : NULL;
		char origin[300];
		snprintf(origin, sizeof origin, "--set %s", s);
		if (!eq || !dot || dot == s || dot + 1 == eq) {
			tlcm_diag_add(L->diag, origin, 0, 0,
				      "expected NODE.PARAM=VALUE");
			continue;
		}
		char id[128], pn[128];
		snprintf(id, sizeof id, "%.*s", (int)(dot - s), s);
		snprintf(pn, sizeof pn, "%.*s", (int)(eq - dot - 1), dot + 1);
		long ni = find_node(L->g, id);
		if (ni < 0) {
			tlcm_diag_add(L->diag, origin, 0, 0, "no node '%s' in "
				      "the graph", id);
			continue;
		}
		set_param(L, &L->g->nodes[ni], NULL, pn, eq + 1, origin);
	}
}

/* A profile's multiplier on a flagged default (profile.h), as text for
 * tlcm_param_parse (so the range check and the shown text stay right). */
static void scale_default(const tlcm_param_desc_t *d, tlcm_pval_t *v,
			  double mul, char *text, size_t len)
{
	double x = d->type == TLCM_P_INT ? (double)v->i : (double)v->u;
	x = floor(x * mul + 0.5);
	if ((d->min != 0 || d->max != 0) && x < d->min)
		x = ceil(d->min);
	if ((d->min != 0 || d->max != 0) && x > d->max)
		x = floor(d->max);
	unsigned long long u = x < 0 ? 0 : (unsigned long long)x;
	if (d->type == TLCM_P_INT)
		snprintf(text, len, "%lld", (long long)x);
	else if (d->type == TLCM_P_SIZE)
		snprintf(text, len, "%llu", u);
	else if (u && u % 1000000000ull == 0)
		snprintf(text, len, "%llus", u / 1000000000ull);
	else if (u && u % 1000000ull == 0)
		snprintf(text, len, "%llums", u / 1000000ull);
	else if (u && u % 1000ull == 0)
		snprintf(text, len, "%lluus", u / 1000ull);
	else
		snprintf(text, len, u ? "%lluns" : "0", u);
}

static void fill_defaults(loader_t *L)
{
	const tlcm_profile_scale_t *ps = tlcm_profile_active();
	for (size_t i = 0; i < L->g->nnodes; i++) {
		tlcm_gnode_t *n = &L->g->nodes[i];
		for (size_t p = 0; p < n->nparams; p++) {
			tlcm_pval_t *v = &n->params[p];
			char why[300];
			if (v->given || !v->d->def)
				continue;
			if (tlcm_param_parse(v->d, v->d->def, v, why, sizeof why)) {
				ERR(L, L->node_yaml[i], "node type %s: default "
				    "of '%s' is invalid: %s (a bug in the node "
				    "type)", n->type->name, v->d->name, why);
				continue;
			}
			tlcm_param_type_t ty = v->d->type;
			double mul = !ps ? 1.0
				: (v->d->flags & TLCM_PARAM_PERIOD) &&
				  ty == TLCM_P_DURATION ? ps->period
				: (v->d->flags & TLCM_PARAM_BATCH) &&
				  (ty == TLCM_P_INT || ty == TLCM_P_SIZE)
				? ps->batch : 1.0;
			if (mul == 1.0)
				continue;
			char text[64];
			scale_default(v->d, v, mul, text, sizeof text);
			if (tlcm_param_parse(v->d, text, v, why, sizeof why))
				ERR(L, L->node_yaml[i], "node type %s: '%s' "
				    "scaled by profile to %s is invalid: %s",
				    n->type->name, v->d->name, text, why);
			v->from = TLCM_FROM_PROFILE;
		}
	}
}

static int load_root(tlcm_graph_t **out, const char *path,
		     tlcm_ynode_t *root, const char *err,
		     const tlcm_registry_t *reg, const char *const *sets,
		     size_t nsets, bool no_env, tlcm_diag_t *diag);

int tlcm_graph_load(tlcm_graph_t **out, const char *path,
		    const tlcm_registry_t *reg, const char *const *sets,
		    size_t nsets, tlcm_diag_t *diag)
{
	*out = NULL;
	char err[600];
	FILE *probe = fopen(path, "r");
	if (!probe) {
		tlcm_diag_add(diag, path, 0, 0, "cannot open: %s",
			      strerror(errno));
		return TLCM_ENOENT;
	}
	fclose(probe);
	tlcm_ynode_t *root = tlcm_yaml_load(path, err, sizeof err);
	return load_root(out, path, root, err, reg, sets, nsets, false, diag);
}

int tlcm_graph_load_text(tlcm_graph_t **out, const char *name,
			 const char *text, size_t len,
			 const tlcm_registry_t *reg, bool env,
			 tlcm_diag_t *diag)
{
	*out = NULL;
	char err[600];
	tlcm_ynode_t *root = tlcm_yaml_load_string(text, len, err, sizeof err);
	return load_root(out, name, root, err, reg, NULL, 0, !env, diag);
}

/* Validate the document root (freed here); err: the parser's words when
 * root is NULL. */
static int load_root(tlcm_graph_t **out, const char *path,
		     tlcm_ynode_t *root, const char *err,
		     const tlcm_registry_t *reg, const char *const *sets,
		     size_t nsets, bool no_env, tlcm_diag_t *diag)
{
	if (!root) {
		char *s;
		if (asprintf(&s, "%s:%s", path, err) >= 0) {
			char **nm = realloc(diag->msgs,
					    (diag->n + 1) * sizeof *nm);
			if (nm) {
				diag->msgs = nm;
				diag->msgs[diag->n++] = s;
			} else {
				free(s);
			}
		}
		return TLCM_EPARSE;
	}
	size_t before = diag->n;
	tlcm_graph_t *g = calloc(1, sizeof *g);
	loader_t L = {.file = path, .diag = diag, .reg = reg, .g = g,
		      .no_env = no_env};
	g->file = strdup(path);
	const tlcm_profile_scale_t *ps = tlcm_profile_active();
	g->profiled = ps != NULL;
	g->profile = (int)tlcm_profile_current();
	if (root->kind != TLCM_Y_MAP) {
		ERR(&L, root, "a graph file is a mapping with 'graph', "
		    "'settings', 'nodes' and 'edges'; found %s",
		    tlcm_yaml_kind_name(root->kind));
		goto done;
	}
	static const char *top[] = {"graph", "settings", "nodes", "edges"};
	const tlcm_ynode_t *nodes = NULL, *edges = NULL;
	for (size_t i = 0; i < root->n; i++) {
		const tlcm_ynode_t *k = tlcm_yaml_key(root, i), *v = tlcm_yaml_val(root, i);
		if (k->kind != TLCM_Y_SCALAR) {
			ERR(&L, k, "keys must be plain names");
		} else if (!strcmp(k->str, "graph")) {
			free(g->name);
			g->name = scalar_text(&L, v, false, "graph");
		} else if (!strcmp(k->str, "settings")) {
			load_settings(&L, v);
		} else if (!strcmp(k->str, "nodes")) {
			nodes = v;
		} else if (!strcmp(k->str, "edges")) {
			edges = v;
		} else {
			unknown_key(&L, k, "the graph file", top, 4);
		}
	}
	if (!g->name) {
		const char *b = strrchr(path, '/');
		g->name = strdup(b ? b + 1 : path);
	}
	if (!nodes || nodes->kind != TLCM_Y_MAP || nodes->n == 0) {
		ERR(&L, nodes ? nodes : root, "'nodes' must be a mapping of "
		    "node id to { type: ..., params: ... } with at least one "
		    "node");
		goto done;
	}
	g->nodes = calloc(nodes->n, sizeof *g->nodes);
	L.node_yaml = calloc(nodes->n, sizeof *L.node_yaml);
	for (size_t i = 0; i < nodes->n; i++) {
		const tlcm_ynode_t *k = tlcm_yaml_key(nodes, i);
		if (k->kind != TLCM_Y_SCALAR) {
			ERR(&L, k, "node ids must be plain names");
			continue;
		}
		load_node(&L, k, tlcm_yaml_val(nodes, i));
	}
	if (edges && edges->kind == TLCM_Y_SEQ) {
		g->edges = calloc(edges->n ? edges->n : 1, sizeof *g->edges);
		for (size_t i = 0; i < edges->n; i++)
			load_edge(&L, edges->items[i]);
	} else if (edges && !(edges->kind == TLCM_Y_SCALAR && !*edges->str)) {
		ERR(&L, edges, "'edges' must be a list of { from: a.out, to: "
		    "b.in }");
	}
	apply_sets(&L, sets, nsets);
	fill_defaults(&L);
	if (ps && !g->workers_given) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		g->workers = ncpu > 0 && ncpu < ps->max_workers
				     ? (int)ncpu : ps->max_workers;
	}
	if (diag->n == before)
		check_graph(&L);
done:
	free(L.node_yaml);
	tlcm_yaml_free(root);
	if (diag->n != before) {
		tlcm_graph_free(g);
		return TLCM_EPARSE;
	}
	*out = g;
	return 0;
}

void tlcm_graph_free(tlcm_graph_t *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nnodes; i++) {
		for (size_t p = 0; p < g->nodes[i].nparams; p++)
			tlcm_pval_clear(&g->nodes[i].params[p]);
		free(g->nodes[i].params);
		free(g->nodes[i].id);
	}
	free(g->nodes);
	free(g->edges);
	free(g->name);
	free(g->file);
	free(g->store);
	free(g->introspect);
	free(g);
}

static void dot_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\' || *s == '{' || *s == '}' ||
		    *s == '|' || *s == '<' || *s == '>')
			fputc('\\', f);
		fputc(*s, f);
	}
}

void tlcm_graph_dot(const tlcm_graph_t *g, FILE *f)
{
	fprintf(f, "digraph \"");
	dot_escape(f, g->name);
	fprintf(f, "\" {\n  rankdir=LR;\n  node [shape=record, fontname="
		"\"Helvetica\", fontsize=10];\n");
	for (size_t i = 0; i < g->nnodes; i++) {
		const tlcm_gnode_t *n = &g->nodes[i];
		fprintf(f, "  \"%s\" [label=\"{", n->id);
		dot_escape(f, n->id);
		fprintf(f, " : ");
		dot_escape(f, n->type->name);
		for (size_t p = 0; p < n->nparams; p++) {
			if (!n->params[p].given)
				continue;
			fprintf(f, "\\l");
			dot_escape(f, n->params[p].d->name);
			fprintf(f, " = ");
			dot_escape(f, tlcm_param_display(&n->params[p]));
		}
		fprintf(f, "\\l}\"];\n");
	}
	for (size_t i = 0; i < g->nedges; i++) {
		const tlcm_gedge_t *e = &g->edges[i];
		const tlcm_gnode_t *a = &g->nodes[e->from], *b = &g->nodes[e->to];
		fprintf(f, "  \"%s\" -> \"%s\" [label=\"%s → %s\\n%zu B %s\"%s];\n",
			a->id, b->id, a->type->outputs[e->from_port].name,
			tlcm_gnode_input_name(b, e->to_port), e->capacity,
			tlcm_edge_policy_name(e->policy),
			e->feedback ? ", style=dashed, constraint=false" : "");
	}
	fprintf(f, "}\n");
}

const char *tlcm_pval_from_name(unsigned from)
{
	static const char *n[] = {"default", "profile", "file", "--set"};
	return from < 4 ? n[from] : "?";
}

void tlcm_graph_print_effective(const tlcm_graph_t *g, FILE *f)
{
	fprintf(f, "profile %s\n", !g->profiled ? "none"
			: tlcm_profile_name((tlcm_profile_t)g->profile));
	fprintf(f, "settings.workers = %d (%s)\n", g->workers,
		g->workers_given ? "file" : !g->profiled ? "default"
							   : "profile");
	for (size_t i = 0; i < g->nedges; i++) {
		const tlcm_gedge_t *e = &g->edges[i];
		const tlcm_gnode_t *a = &g->nodes[e->from], *b = &g->nodes[e->to];
		fprintf(f, "edge %s.%s -> %s.%s capacity = %zu (%s)\n", a->id,
			a->type->outputs[e->from_port].name, b->id,
			tlcm_gnode_input_name(b, e->to_port), e->capacity,
			e->capacity_given ? "file" : !g->profiled ? "default"
								    : "profile");
	}
	for (size_t i = 0; i < g->nnodes; i++) {
		const tlcm_gnode_t *n = &g->nodes[i];
		for (size_t p = 0; p < n->nparams; p++)
			fprintf(f, "%s.%s = %s (%s)\n", n->id,
				n->params[p].d->name,
				n->params[p].text ? tlcm_param_display(&n->params[p])
						  : "(unset)",
				tlcm_pval_from_name(n->params[p].from));
	}
}
