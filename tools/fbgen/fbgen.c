/* fbgen.c — tinylcm-fbgen: C code generator for FlatBuffers schemas.
 *
 * Input is the binary schema flatc writes with `flatc --schema -b X.fbs`
 * (X.bfbs, itself a FlatBuffer of reflection.fbs). It is untrusted: every
 * read goes through a bounds-checked reader that bails out with a message
 * naming what is wrong. Output is one header, X_fb.h, with readers, a
 * verifier and builders for every enum, union, struct and table, on top of
 * the small runtime in engine/fb/fb.h. See docs/flatbuffers.md.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tinylcm_version.h"

#define MAX_SCHEMA_BYTES (64u << 20)

/* reflection.fbs BaseType */
enum {
	BT_NONE, BT_UTYPE, BT_BOOL, BT_BYTE, BT_UBYTE, BT_SHORT, BT_USHORT,
	BT_INT, BT_UINT, BT_LONG, BT_ULONG, BT_FLOAT, BT_DOUBLE, BT_STRING,
	BT_VECTOR, BT_OBJ, BT_UNION, BT_ARRAY, BT_MAX
};

typedef struct {
	int base, element, index;
	unsigned fixed_length;
} ftype_t;

typedef struct {
	char *name;
	ftype_t type;
	unsigned id, offset;
	int64_t def_int;
	double def_real;
	bool deprecated, required, optional;
} field_t;

typedef struct {
	char *name, *cname;
	field_t *fields;
	size_t nfields;
	bool is_struct;
	int minalign, bytesize;
	int mark; /* topological sort of structs */
} object_t;

typedef struct {
	char *name;
	int64_t value;
	ftype_t union_type;
} enumval_t;

typedef struct {
	char *name, *cname;
	enumval_t *vals;
	size_t nvals;
	bool is_union;
	ftype_t underlying;
} enum_t;

typedef struct {
	object_t *objs;
	size_t nobjs;
	enum_t *enums;
	size_t nenums;
	char *file_ident; /* NULL when the schema has none */
	int root;         /* object index or -1 */
} schema_t;

/* ---- bounds-checked reader for the untrusted .bfbs ---------------------- */

typedef struct {
	const uint8_t *b;
	size_t n;
	jmp_buf jb;
	char err[512];
} rd_t;

static void __attribute__((noreturn, format(printf, 2, 3)))
rfail(rd_t *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	for (char *c = r->err; *c; c++) /* names may hold any bytes */
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	longjmp(r->jb, 1);
}

static const uint8_t *rbytes(rd_t *r, size_t pos, size_t len, const char *what)
{
	if (pos > r->n || len > r->n - pos)
		rfail(r, "%s at offset %zu (%zu bytes) lies past the end of the "
		      "%zu-byte file", what, pos, len, r->n);
	return r->b + pos;
}

#define RD(name, type)                                                     \
	static type rd_##name(rd_t *r, size_t pos, const char *what)       \
	{                                                                  \
		type v;                                                    \
		memcpy(&v, rbytes(r, pos, sizeof v, what), sizeof v);      \
		return v;                                                  \
	}
RD(u8, uint8_t)
RD(u16, uint16_t)
RD(u32, uint32_t)
RD(i32, int32_t)
RD(i64, int64_t)
RD(f64, double)
#undef RD

static size_t rderef(rd_t *r, size_t at, const char *what)
{
	uint32_t off = rd_u32(r, at, what);
	if (off == 0 || (uint64_t)at + off >= r->n)
		rfail(r, "%s: offset %u at %zu points outside the file", what,
		      off, at);
	return at + off;
}

/* Absolute position of field vt_off of the table at t, 0 when absent. */
static size_t rfield(rd_t *r, size_t t, unsigned vt_off, size_t size,
		     const char *what)
{
	int64_t vt = (int64_t)t - rd_i32(r, t, what);
	if (vt < 0)
		rfail(r, "%s: vtable offset points before the file start",
		      what);
	uint16_t vsize = rd_u16(r, (size_t)vt, what);
	uint16_t tsize = rd_u16(r, (size_t)vt + 2, what);
	if (vt_off + 2 > vsize)
		return 0;
	uint16_t o = rd_u16(r, (size_t)vt + vt_off, what);
	if (!o)
		return 0;
	if ((size_t)o + size > tsize)
		rfail(r, "%s: field at table offset %u exceeds the table size "
		      "%u", what, o, tsize);
	rbytes(r, t + o, size, what);
	return t + o;
}

static size_t rref(rd_t *r, size_t t, unsigned vt_off, bool required,
		   const char *what)
{
	size_t p = rfield(r, t, vt_off, 4, what);
	if (!p) {
		if (required)
			rfail(r, "%s is missing", what);
		return 0;
	}
	return rderef(r, p, what);
}

static char *rstring_at(rd_t *r, size_t s, const char *what)
{
	uint32_t len = rd_u32(r, s, what);
	const uint8_t *p = rbytes(r, s + 4, (size_t)len + 1, what);
	if (p[len] != 0 || memchr(p, 0, len))
		rfail(r, "%s: string at %zu is not a terminated text", what,
		      s);
	char *out = strdup((const char *)p);
	if (!out)
		rfail(r, "out of memory");
	return out;
}

static char *rstring(rd_t *r, size_t t, unsigned vt_off, bool required,
		     const char *what)
{
	size_t s = rref(r, t, vt_off, required, what);
	return s ? rstring_at(r, s, what) : NULL;
}

/* Vector of uoffsets: returns the count, *data the first element. */
static uint32_t rvec(rd_t *r, size_t t, unsigned vt_off, bool required,
		     const char *what, size_t *data)
{
	size_t v = rref(r, t, vt_off, required, what);
	*data = 0;
	if (!v)
		return 0;
	uint32_t n = rd_u32(r, v, what);
	rbytes(r, v + 4, (size_t)n * 4, what);
	*data = v + 4;
	return n;
}

static int64_t rint_field(rd_t *r, size_t t, unsigned vt_off, int size,
			  int64_t def, const char *what)
{
	size_t p = rfield(r, t, vt_off, (size_t)size, what);
	if (!p)
		return def;
	switch (size) {
	case 1: return (int8_t)rd_u8(r, p, what);
	case 2: return rd_u16(r, p, what);
	case 4: return rd_i32(r, p, what);
	default: return rd_i64(r, p, what);
	}
}

static void *xcalloc(rd_t *r, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		rfail(r, "out of memory");
	return p;
}

static ftype_t read_type(rd_t *r, size_t t, const char *what)
{
	ftype_t ty;
	ty.base = (int)rint_field(r, t, 4, 1, 0, what);
	ty.element = (int)rint_field(r, t, 6, 1, 0, what);
	ty.index = (int)rint_field(r, t, 8, 4, -1, what);
	ty.fixed_length = (unsigned)rint_field(r, t, 10, 2, 0, what);
	return ty;
}

static void read_schema(rd_t *r, schema_t *s)
{
	if (r->n < 8)
		rfail(r, "file of %zu bytes is too short to be a binary schema",
		      r->n);
	if (memcmp(r->b + 4, "BFBS", 4) != 0)
		rfail(r, "not a binary schema: file identifier is not \"BFBS\" "
		      "(make it with `flatc --schema -b X.fbs`)");
	size_t root = rderef(r, 0, "root table");
	size_t vec;
	char what[300];

	s->nobjs = rvec(r, root, 4, true, "Schema.objects", &vec);
	s->objs = xcalloc(r, s->nobjs, sizeof *s->objs);
	for (size_t i = 0; i < s->nobjs; i++) {
		object_t *o = &s->objs[i];
		size_t ot = rderef(r, vec + 4 * i, "Schema.objects[]");
		o->name = rstring(r, ot, 4, true, "Object.name");
		snprintf(what, sizeof what, "Object %s", o->name);
		o->is_struct = rint_field(r, ot, 8, 1, 0, what) != 0;
		o->minalign = (int)rint_field(r, ot, 10, 4, 1, what);
		o->bytesize = (int)rint_field(r, ot, 12, 4, 0, what);
		size_t fv;
		o->nfields = rvec(r, ot, 6, true, what, &fv);
		o->fields = xcalloc(r, o->nfields, sizeof *o->fields);
		for (size_t j = 0; j < o->nfields; j++) {
			field_t *f = &o->fields[j];
			size_t ft = rderef(r, fv + 4 * j, what);
			f->name = rstring(r, ft, 4, true, "Field.name");
			snprintf(what, sizeof what, "field %s.%s", o->name,
				 f->name);
			size_t tt = rref(r, ft, 6, true, what);
			f->type = read_type(r, tt, what);
			f->id = (unsigned)rint_field(r, ft, 8, 2, 0, what);
			f->offset = (unsigned)rint_field(r, ft, 10, 2, 0, what);
			f->def_int = rint_field(r, ft, 12, 8, 0, what);
			size_t dp = rfield(r, ft, 14, 8, what);
			f->def_real = dp ? rd_f64(r, dp, what) : 0.0;
			f->deprecated = rint_field(r, ft, 16, 1, 0, what) != 0;
			f->required = rint_field(r, ft, 18, 1, 0, what) != 0;
			f->optional = rint_field(r, ft, 26, 1, 0, what) != 0;
			snprintf(what, sizeof what, "Object %s", o->name);
		}
	}

	s->nenums = rvec(r, root, 6, true, "Schema.enums", &vec);
	s->enums = xcalloc(r, s->nenums, sizeof *s->enums);
	for (size_t i = 0; i < s->nenums; i++) {
		enum_t *e = &s->enums[i];
		size_t et = rderef(r, vec + 4 * i, "Schema.enums[]");
		e->name = rstring(r, et, 4, true, "Enum.name");
		snprintf(what, sizeof what, "Enum %s", e->name);
		e->is_union = rint_field(r, et, 8, 1, 0, what) != 0;
		e->underlying = read_type(r, rref(r, et, 10, true, what), what);
		size_t vv;
		e->nvals = rvec(r, et, 6, true, what, &vv);
		e->vals = xcalloc(r, e->nvals, sizeof *e->vals);
		for (size_t j = 0; j < e->nvals; j++) {
			enumval_t *ev = &e->vals[j];
			size_t vt = rderef(r, vv + 4 * j, what);
			ev->name = rstring(r, vt, 4, true, "EnumVal.name");
			ev->value = rint_field(r, vt, 6, 8, 0, what);
			size_t ut = rref(r, vt, 10, false, what);
			ev->union_type = ut ? read_type(r, ut, what)
					    : (ftype_t){BT_NONE, BT_NONE, -1, 0};
		}
	}

	s->file_ident = rstring(r, root, 8, false, "Schema.file_ident");
	if (s->file_ident && !*s->file_ident) { /* flatc writes "" for none */
		free(s->file_ident);
		s->file_ident = NULL;
	}
	s->root = -1;
	size_t rt = rref(r, root, 12, false, "Schema.root_table");
	if (rt) {
		char *rn = rstring(r, rt, 4, true, "Schema.root_table.name");
		for (size_t i = 0; i < s->nobjs; i++)
			if (strcmp(s->objs[i].name, rn) == 0)
				s->root = (int)i;
		free(rn);
		if (s->root < 0)
			rfail(r, "root table is not among the schema's objects");
	}
}

/* ---- validation: everything the emitter relies on ----------------------- */

static bool is_scalar(int bt)
{
	return bt >= BT_UTYPE && bt <= BT_DOUBLE;
}

static int scalar_size(int bt)
{
	static const int sz[] = {0, 1, 1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
	return is_scalar(bt) ? sz[bt] : 0;
}

static bool ident_ok(const char *s, bool dots)
{
	if (!s || !*s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
			   *s == '_'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' ||
		      (dots && *s == '.' && s[1] && s[1] != '.')))
			return false;
	return true;
}

static char *cname_of(const char *name)
{
	char *c = strdup(name);
	if (!c) {
		fprintf(stderr, "tinylcm-fbgen: out of memory\n");
		exit(1);
	}
	for (char *p = c; *p; p++)
		if (*p == '.')
			*p = '_';
	return c;
}

static void check_type(rd_t *r, const schema_t *s, const ftype_t *t,
		       const char *what, bool in_struct)
{
	int b = t->base;
	if (b <= BT_NONE || b >= BT_MAX)
		rfail(r, "%s: unknown base type %d", what, b);
	if (b == BT_OBJ && (t->index < 0 || (size_t)t->index >= s->nobjs))
		rfail(r, "%s: object index %d out of range", what, t->index);
	if ((b == BT_UNION || b == BT_UTYPE) &&
	    (t->index < 0 || (size_t)t->index >= s->nenums ||
	     !s->enums[t->index].is_union))
		rfail(r, "%s: union index %d out of range", what, t->index);
	if (is_scalar(b) && b != BT_UTYPE && t->index >= 0 &&
	    ((size_t)t->index >= s->nenums || s->enums[t->index].is_union))
		rfail(r, "%s: enum index %d out of range", what, t->index);
	if (in_struct && !is_scalar(b) && b != BT_OBJ && b != BT_ARRAY)
		rfail(r, "%s: type %d is not allowed in a struct", what, b);
	if (b == BT_OBJ && in_struct && !s->objs[t->index].is_struct)
		rfail(r, "%s: struct holds table", what);
	if (b == BT_VECTOR || b == BT_ARRAY) {
		int e = t->element;
		bool ok = is_scalar(e) || e == BT_OBJ ||
			  (b == BT_VECTOR && (e == BT_STRING || e == BT_UNION));
		if (!ok)
			rfail(r, "%s: unsupported element type %d", what, e);
		if (b == BT_ARRAY && (!in_struct || t->fixed_length == 0))
			rfail(r, "%s: bad fixed-length array", what);
		if (e == BT_OBJ &&
		    (t->index < 0 || (size_t)t->index >= s->nobjs))
			rfail(r, "%s: element index out of range", what);
		if (b == BT_ARRAY && e == BT_OBJ && !s->objs[t->index].is_struct)
			rfail(r, "%s: array of tables", what);
		if (e == BT_UNION &&
		    (t->index < 0 || (size_t)t->index >= s->nenums ||
		     !s->enums[t->index].is_union))
			rfail(r, "%s: union index out of range", what);
		if (is_scalar(e) && t->index >= 0 &&
		    (size_t)t->index >= s->nenums)
			rfail(r, "%s: enum index out of range", what);
	}
}

static int struct_align(const schema_t *s, const ftype_t *t, bool elem)
{
	int b = elem ? t->element : t->base;
	if (b == BT_OBJ)
		return s->objs[t->index].minalign;
	return scalar_size(b);
}

static int struct_size(const schema_t *s, const ftype_t *t)
{
	int b = t->base == BT_ARRAY ? t->element : t->base;
	int one = b == BT_OBJ ? s->objs[t->index].bytesize : scalar_size(b);
	return t->base == BT_ARRAY ? one * (int)t->fixed_length : one;
}

static void validate(rd_t *r, schema_t *s)
{
	char what[300];
	if (s->file_ident && strlen(s->file_ident) != 4)
		rfail(r, "file_identifier \"%s\" is not 4 characters",
		      s->file_ident);
	for (size_t i = 0; i < s->nenums; i++) {
		enum_t *e = &s->enums[i];
		if (!ident_ok(e->name, true))
			rfail(r, "enum name \"%s\" is not a C identifier",
			      e->name);
		e->cname = cname_of(e->name);
		if (!is_scalar(e->underlying.base) ||
		    e->underlying.base == BT_BOOL)
			rfail(r, "enum %s: underlying type %d is not an integer",
			      e->name, e->underlying.base);
		for (size_t j = 0; j < e->nvals; j++) {
			enumval_t *v = &e->vals[j];
			snprintf(what, sizeof what, "%s.%s", e->name, v->name);
			if (!ident_ok(v->name, true))
				rfail(r, "enum value name \"%s\" is not a C "
				      "identifier", what);
			if (e->is_union) {
				if (v->value < 0 || v->value > 255)
					rfail(r, "%s: union value out of range",
					      what);
				if (v->value == 0)
					continue;
				int b = v->union_type.base;
				if (b != BT_OBJ && b != BT_STRING)
					rfail(r, "%s: unsupported union member "
					      "type %d", what, b);
				check_type(r, s, &v->union_type, what, false);
			}
		}
	}
	for (size_t i = 0; i < s->nobjs; i++) {
		object_t *o = &s->objs[i];
		if (!ident_ok(o->name, true))
			rfail(r, "object name \"%s\" is not a C identifier",
			      o->name);
		o->cname = cname_of(o->name);
		if (o->minalign < 1 || o->minalign > 256 ||
		    (o->minalign & (o->minalign - 1)))
			rfail(r, "%s: bad alignment %d", o->name, o->minalign);
		if (o->is_struct && (o->bytesize <= 0 || o->bytesize > 65536 ||
				     o->bytesize % o->minalign))
			rfail(r, "%s: bad struct size %d", o->name,
			      o->bytesize);
		for (size_t j = 0; j < o->nfields; j++) {
			field_t *f = &o->fields[j];
			snprintf(what, sizeof what, "%s.%s", o->name, f->name);
			if (!ident_ok(f->name, false))
				rfail(r, "field name \"%s\" is not a C "
				      "identifier", what);
			check_type(r, s, &f->type, what, o->is_struct);
			if (!o->is_struct && f->id > 32767)
				rfail(r, "%s: field id %u too large", what,
				      f->id);
			if (o->is_struct) {
				int a = struct_align(s, &f->type,
						     f->type.base == BT_ARRAY);
				int sz = struct_size(s, &f->type);
				if (f->offset % (unsigned)a ||
				    f->offset + (unsigned)sz >
					    (unsigned)o->bytesize)
					rfail(r, "%s: offset %u does not fit "
					      "the struct", what, f->offset);
			}
			if (f->type.base == BT_UNION ||
			    (f->type.base == BT_VECTOR &&
			     f->type.element == BT_UNION)) {
				/* flatc puts the type field at id - 1 */
				bool found = false;
				for (size_t k = 0; k < o->nfields; k++)
					if (o->fields[k].id + 1 == f->id &&
					    (o->fields[k].type.base ==
						     BT_UTYPE ||
					     o->fields[k].type.element ==
						     BT_UTYPE))
						found = true;
				if (!found)
					rfail(r, "%s: union has no type field",
					      what);
			}
		}
		/* tables: emit in id order, so a union's type field (id - 1)
		 * is declared before the union's typed accessors use it */
		for (size_t j = 1; !o->is_struct && j < o->nfields; j++)
			for (size_t k = j; k > 0 && o->fields[k - 1].id >
							    o->fields[k].id;
			     k--) {
				field_t t = o->fields[k];
				o->fields[k] = o->fields[k - 1];
				o->fields[k - 1] = t;
			}
		/* field ids of a table must be unique */
		for (size_t j = 0; !o->is_struct && j < o->nfields; j++)
			for (size_t k = j + 1; k < o->nfields; k++)
				if (o->fields[j].id == o->fields[k].id)
					rfail(r, "%s: fields %s and %s share "
					      "id %u", o->name,
					      o->fields[j].name,
					      o->fields[k].name,
					      o->fields[j].id);
	}
}

/* ---- emitter ------------------------------------------------------------ */

typedef struct {
	FILE *out;
	const schema_t *s;
	/* names generated for the table being emitted (collision check) */
	char **names;
	size_t nnames, cap;
	const char *src;
	int err;
} gen_t;

#define P(...) fprintf(g->out, __VA_ARGS__)

static const char *ctype(int bt)
{
	static const char *t[] = {NULL, "uint8_t", "bool", "int8_t", "uint8_t",
				  "int16_t", "uint16_t", "int32_t", "uint32_t",
				  "int64_t", "uint64_t", "float", "double"};
	return is_scalar(bt) ? t[bt] : NULL;
}

/* C type for a raw (in-buffer) scalar: bool is stored as one byte. */
static const char *raw_ctype(int bt)
{
	return bt == BT_BOOL ? "uint8_t" : ctype(bt);
}

static const char *load_fn(int bt)
{
	static const char *t[] = {NULL, "u8", "bool", "i8", "u8", "i16", "u16",
				  "i32", "u32", "i64", "u64", "f32", "f64"};
	return t[bt];
}

static bool is_signed(int bt)
{
	return bt == BT_BYTE || bt == BT_SHORT || bt == BT_INT ||
	       bt == BT_LONG;
}

/* C type name of a scalar that may be an enum or union type. */
static void scalar_cname(gen_t *g, int bt, int index, char *buf, size_t n,
			 bool raw)
{
	if (bt == BT_UTYPE && index >= 0)
		snprintf(buf, n, "%s_union_type_t", g->s->enums[index].cname);
	else if (is_scalar(bt) && bt != BT_BOOL && index >= 0)
		snprintf(buf, n, "%s_enum_t", g->s->enums[index].cname);
	else
		snprintf(buf, n, "%s", raw ? raw_ctype(bt) : ctype(bt));
}

static void int_literal(char *buf, size_t n, int bt, int64_t v)
{
	if (bt == BT_BOOL)
		snprintf(buf, n, "%s", v ? "true" : "false");
	else if (!is_signed(bt))
		snprintf(buf, n, "UINT64_C(%llu)", (unsigned long long)v);
	else if (v == INT64_MIN)
		snprintf(buf, n, "INT64_MIN");
	else
		snprintf(buf, n, "INT64_C(%lld)", (long long)v);
}

static void real_literal(char *buf, size_t n, int bt, double v)
{
	if (isnan(v)) {
		snprintf(buf, n, "NAN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, n, "%sINFINITY", v < 0 ? "-" : "");
		return;
	}
	snprintf(buf, n, bt == BT_FLOAT ? "%.9g" : "%.17g", v);
	if (!strpbrk(buf, ".e"))
		strncat(buf, ".0", n - strlen(buf) - 1);
	if (bt == BT_FLOAT)
		strncat(buf, "f", n - strlen(buf) - 1);
}

static void default_literal(gen_t *g, const field_t *f, char *buf, size_t n)
{
	int bt = f->type.base;
	char tn[256], lit[128];
	if (f->optional) {
		snprintf(buf, n, "0");
		return;
	}
	if (bt == BT_FLOAT || bt == BT_DOUBLE) {
		real_literal(buf, n, bt, f->def_real);
		return;
	}
	int_literal(lit, sizeof lit, bt, f->def_int);
	if (bt == BT_BOOL) {
		snprintf(buf, n, "%s", lit);
		return;
	}
	scalar_cname(g, bt, f->type.index, tn, sizeof tn, false);
	snprintf(buf, n, "((%s)%s)", tn, lit);
}

/* Register a generated function name for collision detection. */
static void name(gen_t *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void name(gen_t *g, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < g->nnames; i++)
		if (strcmp(g->names[i], buf) == 0 && !g->err) {
			fprintf(stderr, "tinylcm-fbgen: %s: generated name %s "
				"is defined twice; rename the field that "
				"produces it (reserved suffixes: _len, _at, "
				"_type, _is_present, _create, _as_*; reserved "
				"names: start, end, finish, as_root, verify)\n",
				g->src, buf);
			g->err = 1;
		}
	if (g->nnames == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 32;
		g->names = realloc(g->names, g->cap * sizeof *g->names);
		if (!g->names) {
			fprintf(stderr, "tinylcm-fbgen: out of memory\n");
			exit(1);
		}
	}
	g->names[g->nnames++] = strdup(buf);
}

static void names_reset(gen_t *g)
{
	for (size_t i = 0; i < g->nnames; i++)
		free(g->names[i]);
	g->nnames = 0;
}

static void guard_open(gen_t *g, const char *section, const char *cname)
{
	P("#ifndef TLCM_FB_%s_%s\n#define TLCM_FB_%s_%s\n", section, cname,
	  section, cname);
}

static void guard_close(gen_t *g)
{
	P("#endif\n\n");
}

static void emit_enum(gen_t *g, const enum_t *e)
{
	const char *cn = e->cname;
	int bt = e->underlying.base;
	char lit[128];
	guard_open(g, "ENUM", cn);
	if (e->is_union) {
		P("/* union %s */\ntypedef uint8_t %s_union_type_t;\n", e->name,
		  cn);
		for (size_t i = 0; i < e->nvals; i++) {
			char *vn = cname_of(e->vals[i].name);
			P("#define %s_%s ((%s_union_type_t)%lld)\n", cn, vn,
			  cn, (long long)e->vals[i].value);
			free(vn);
		}
		P("\nstatic inline const char *%s_name(%s_union_type_t v)\n{\n"
		  "\tswitch (v) {\n", cn, cn);
	} else {
		P("/* enum %s */\ntypedef %s %s_enum_t;\n", e->name,
		  ctype(bt), cn);
		for (size_t i = 0; i < e->nvals; i++) {
			int_literal(lit, sizeof lit, bt, e->vals[i].value);
			P("#define %s_%s ((%s_enum_t)%s)\n", cn,
			  e->vals[i].name, cn, lit);
		}
		P("\n/* The value's name, or NULL for a value the schema does "
		  "not define. */\n");
		P("static inline const char *%s_name(%s_enum_t v)\n{\n"
		  "\tswitch (v) {\n", cn, cn);
	}
	for (size_t i = 0; i < e->nvals; i++) {
		if (e->is_union)
			snprintf(lit, sizeof lit, "%lld",
				 (long long)e->vals[i].value);
		else
			int_literal(lit, sizeof lit, bt, e->vals[i].value);
		P("\tcase %s: return \"%s\";\n", lit, e->vals[i].name);
	}
	P("\tdefault: return NULL;\n\t}\n}\n\n");
	P("static inline bool %s_is_known(%s_%s_t v)\n{\n"
	  "\treturn %s_name(v) != NULL;\n}\n", cn, cn,
	  e->is_union ? "union_type" : "enum", cn);
	guard_close(g);
}

static void emit_struct(gen_t *g, object_t *o)
{
	const schema_t *s = g->s;
	if (o->mark == 2)
		return;
	o->mark = 1;
	/* nested structs first */
	for (size_t i = 0; i < o->nfields; i++) {
		const ftype_t *t = &o->fields[i].type;
		int b = t->base == BT_ARRAY ? t->element : t->base;
		if (b == BT_OBJ && s->objs[t->index].mark == 0)
			emit_struct(g, &s->objs[t->index]);
	}
	o->mark = 2;
	const char *cn = o->cname;
	guard_open(g, "STRUCT", cn);
	P("/* struct %s: %d bytes, aligned to %d */\n", o->name, o->bytesize,
	  o->minalign);
	P("typedef struct %s {\n", cn);
	/* fields in offset order with explicit padding */
	size_t *ord = calloc(o->nfields ? o->nfields : 1, sizeof *ord);
	for (size_t i = 0; i < o->nfields; i++)
		ord[i] = i;
	for (size_t i = 1; i < o->nfields; i++)
		for (size_t j = i; j > 0 && o->fields[ord[j - 1]].offset >
						    o->fields[ord[j]].offset;
		     j--) {
			size_t t = ord[j];
			ord[j] = ord[j - 1];
			ord[j - 1] = t;
		}
	unsigned at = 0, pad = 0;
	for (size_t i = 0; i < o->nfields; i++) {
		const field_t *f = &o->fields[ord[i]];
		if (f->offset > at)
			P("\tuint8_t _pad%u[%u];\n", pad++, f->offset - at);
		const ftype_t *t = &f->type;
		int b = t->base == BT_ARRAY ? t->element : t->base;
		char tn[256];
		if (b == BT_OBJ)
			snprintf(tn, sizeof tn, "%s_t", s->objs[t->index].cname);
		else
			scalar_cname(g, b, t->index, tn, sizeof tn, true);
		P("\t");
		if (i == 0)
			P("_Alignas(%d) ", o->minalign);
		if (t->base == BT_ARRAY)
			P("%s %s[%u];\n", tn, f->name, t->fixed_length);
		else
			P("%s %s;\n", tn, f->name);
		at = f->offset + (unsigned)struct_size(s, t);
	}
	if ((unsigned)o->bytesize > at)
		P("\tuint8_t _pad%u[%u];\n", pad++, o->bytesize - at);
	P("} %s_t;\n", cn);
	P("_Static_assert(sizeof(%s_t) == %d, \"%s size\");\n", cn,
	  o->bytesize, o->name);
	P("_Static_assert(_Alignof(%s_t) == %d, \"%s alignment\");\n", cn,
	  o->minalign, o->name);
	for (size_t i = 0; i < o->nfields; i++)
		P("_Static_assert(offsetof(%s_t, %s) == %u, \"%s.%s offset\");\n",
		  cn, o->fields[i].name, o->fields[i].offset, o->name,
		  o->fields[i].name);
	free(ord);
	guard_close(g);
}

static const field_t *type_field_of(const object_t *o, const field_t *u)
{
	for (size_t k = 0; k < o->nfields; k++)
		if (o->fields[k].id + 1 == u->id)
			return &o->fields[k];
	return NULL;
}

/* Is f the type field flatc added for a union (or union vector)? */
static bool is_union_type_field(const object_t *o, const field_t *f)
{
	bool vec = f->type.base == BT_VECTOR;
	if (f->type.base != BT_UTYPE && !(vec && f->type.element == BT_UTYPE))
		return false;
	for (size_t k = 0; k < o->nfields; k++)
		if (o->fields[k].id == f->id + 1 &&
		    (o->fields[k].type.base == BT_UNION ||
		     (o->fields[k].type.base == BT_VECTOR &&
		      o->fields[k].type.element == BT_UNION)))
			return true;
	return false;
}

static unsigned vt_of(const field_t *f)
{
	return 4 + 2 * f->id;
}

static void emit_readers(gen_t *g, const object_t *o)
{
	const schema_t *s = g->s;
	const char *cn = o->cname;
	guard_open(g, "READ", cn);
	P("/* table %s: readers */\n", o->name);
	for (size_t i = 0; i < o->nfields; i++) {
		const field_t *f = &o->fields[i];
		const ftype_t *t = &f->type;
		if (f->deprecated)
			continue;
		const char *fn = f->name;
		unsigned vt = vt_of(f);
		char tn[256], def[512];
		name(g, "%s_%s", cn, fn);
		name(g, "%s_%s_is_present", cn, fn);
		P("static inline bool %s_%s_is_present(%s_table_t t)\n{\n"
		  "\treturn tlcm_fb_field(t, %u) != NULL;\n}\n", cn, fn, cn, vt);
		if (is_scalar(t->base)) {
			scalar_cname(g, t->base, t->index, tn, sizeof tn, false);
			default_literal(g, f, def, sizeof def);
			if (f->optional)
				P("/* optional: 0 when absent, see "
				  "%s_%s_is_present() */\n", cn, fn);
			P("static inline %s %s_%s(%s_table_t t)\n{\n"
			  "\tconst uint8_t *p = tlcm_fb_field(t, %u);\n"
			  "\treturn p ? (%s)tlcm_fb_load_%s(p) : %s;\n}\n",
			  tn, cn, fn, cn, vt, tn, load_fn(t->base), def);
		} else if (t->base == BT_STRING) {
			name(g, "%s_%s_len", cn, fn);
			P("static inline const char *%s_%s(%s_table_t t)\n{\n"
			  "\treturn tlcm_fb_str(tlcm_fb_deref(tlcm_fb_field(t, "
			  "%u)));\n}\n", cn, fn, cn, vt);
			P("static inline size_t %s_%s_len(%s_table_t t)\n{\n"
			  "\treturn tlcm_fb_vec_len(tlcm_fb_deref(tlcm_fb_field("
			  "t, %u)));\n}\n", cn, fn, cn, vt);
		} else if (t->base == BT_OBJ && s->objs[t->index].is_struct) {
			P("static inline const %s_t *%s_%s(%s_table_t t)\n{\n"
			  "\treturn (const %s_t *)tlcm_fb_field(t, %u);\n}\n",
			  s->objs[t->index].cname, cn, fn, cn,
			  s->objs[t->index].cname, vt);
		} else if (t->base == BT_OBJ) {
			const char *sub = s->objs[t->index].cname;
			P("static inline %s_table_t %s_%s(%s_table_t t)\n{\n"
			  "\treturn (%s_table_t)tlcm_fb_deref(tlcm_fb_field(t, "
			  "%u));\n}\n", sub, cn, fn, cn, sub, vt);
		} else if (t->base == BT_UNION) {
			const enum_t *u = &s->enums[t->index];
			P("/* union value: check %s_%s_type() first */\n", cn,
			  fn);
			P("static inline const void *%s_%s(%s_table_t t)\n{\n"
			  "\treturn tlcm_fb_deref(tlcm_fb_field(t, %u));\n}\n",
			  cn, fn, cn, vt);
			for (size_t k = 0; k < u->nvals; k++) {
				const enumval_t *m = &u->vals[k];
				if (m->value == 0)
					continue;
				char *mn = cname_of(m->name);
				const ftype_t *mt = &m->union_type;
				name(g, "%s_%s_as_%s", cn, fn, mn);
				if (mt->base == BT_STRING)
					snprintf(tn, sizeof tn, "const char *");
				else if (s->objs[mt->index].is_struct)
					snprintf(tn, sizeof tn, "const %s_t *",
						 s->objs[mt->index].cname);
				else
					snprintf(tn, sizeof tn, "%s_table_t ",
						 s->objs[mt->index].cname);
				P("static inline %s%s_%s_as_%s(%s_table_t t)\n{\n"
				  "\tif (%s_%s_type(t) != %s_%s)\n"
				  "\t\treturn NULL;\n", tn, cn, fn, mn, cn, cn,
				  fn, u->cname, mn);
				if (mt->base == BT_STRING)
					P("\treturn tlcm_fb_str((const uint8_t "
					  "*)%s_%s(t));\n}\n", cn, fn);
				else
					P("\treturn (%s)%s_%s(t);\n}\n", tn, cn,
					  fn);
				free(mn);
			}
		} else if (t->base == BT_VECTOR) {
			int e = t->element;
			name(g, "%s_%s_len", cn, fn);
			name(g, "%s_%s_at", cn, fn);
			P("static inline size_t %s_%s_len(%s_table_t t)\n{\n"
			  "\treturn tlcm_fb_vec_len(tlcm_fb_deref(tlcm_fb_field("
			  "t, %u)));\n}\n", cn, fn, cn, vt);
			if (is_scalar(e) || (e == BT_OBJ &&
					     s->objs[t->index].is_struct)) {
				const char *ld = NULL;
				if (e == BT_OBJ) {
					snprintf(tn, sizeof tn, "%s_t",
						 s->objs[t->index].cname);
				} else {
					scalar_cname(g, e, t->index, tn,
						     sizeof tn, true);
					ld = load_fn(e);
				}
				P("/* the elements in place (NULL when absent)"
				  " */\n");
				P("static inline const %s *%s_%s(%s_table_t t)\n"
				  "{\n\treturn (const %s *)tlcm_fb_vec_data("
				  "tlcm_fb_deref(tlcm_fb_field(t, %u)));\n}\n",
				  tn, cn, fn, cn, tn, vt);
				if (ld) {
					char rt[256];
					scalar_cname(g, e, t->index, rt,
						     sizeof rt, false);
					P("static inline %s %s_%s_at(%s_table_t "
					  "t, size_t i)\n{\n"
					  "\treturn i < %s_%s_len(t) ? (%s)"
					  "tlcm_fb_load_%s(%s_%s(t) + i) : "
					  "0;\n}\n", rt, cn, fn, cn, cn, fn,
					  rt, ld, cn, fn);
				} else {
					P("static inline const %s *%s_%s_at("
					  "%s_table_t t, size_t i)\n{\n"
					  "\treturn i < %s_%s_len(t) ? %s_%s(t)"
					  " + i : NULL;\n}\n", tn, cn, fn, cn,
					  cn, fn, cn, fn);
				}
			} else if (e == BT_STRING) {
				P("static inline const char *%s_%s_at(%s_table_t"
				  " t, size_t i)\n{\n\treturn tlcm_fb_str("
				  "tlcm_fb_vec_deref(tlcm_fb_deref(tlcm_fb_field"
				  "(t, %u)), i));\n}\n", cn, fn, cn, vt);
			} else if (e == BT_OBJ) {
				const char *sub = s->objs[t->index].cname;
				P("static inline %s_table_t %s_%s_at(%s_table_t"
				  " t, size_t i)\n{\n\treturn (%s_table_t)"
				  "tlcm_fb_vec_deref(tlcm_fb_deref(tlcm_fb_field"
				  "(t, %u)), i);\n}\n", sub, cn, fn, cn, sub,
				  vt);
			} else { /* union */
				P("/* element i: check %s_%s_type_at() first "
				  "*/\n", cn, fn);
				P("static inline const void *%s_%s_at(%s_table_t"
				  " t, size_t i)\n{\n\treturn tlcm_fb_vec_deref("
				  "tlcm_fb_deref(tlcm_fb_field(t, %u)), i);\n}\n",
				  cn, fn, cn, vt);
			}
		}
	}
	guard_close(g);
}

static void emit_union_verifier(gen_t *g, const enum_t *u)
{
	const schema_t *s = g->s;
	guard_open(g, "UVERIFY", u->cname);
	P("static inline int %s_verify_union(tlcm_fb_verifier_t *v, uint8_t "
	  "type, uint32_t pos,\n\t\tint depth, const char *owner, "
	  "const char *field)\n{\n\t(void)depth;\n\tswitch (type) {\n",
	  u->cname);
	for (size_t k = 0; k < u->nvals; k++) {
		const enumval_t *m = &u->vals[k];
		const ftype_t *mt = &m->union_type;
		if (m->value == 0)
			continue;
		P("\tcase %lld:\n", (long long)m->value);
		if (mt->base == BT_STRING)
			P("\t\treturn tlcm_fb_verify_string_at(v, pos, owner, "
			  "field);\n");
		else if (s->objs[mt->index].is_struct)
			P("\t\treturn tlcm_fb_verify_struct_at(v, pos, %d, %d, "
			  "owner, field);\n", s->objs[mt->index].bytesize,
			  s->objs[mt->index].minalign);
		else
			P("\t\treturn %s_verify_table(v, pos, depth + 1);\n",
			  s->objs[mt->index].cname);
	}
	P("\tdefault:\n\t\treturn tlcm_fb_fail(owner, field, \"unknown union "
	  "type %%u\", type);\n\t}\n}\n");
	guard_close(g);
}

static void emit_verifier(gen_t *g, const object_t *o)
{
	const schema_t *s = g->s;
	const char *cn = o->cname;
	guard_open(g, "VERIFY", cn);
	P("static inline int %s_verify_table(tlcm_fb_verifier_t *v, uint32_t "
	  "pos, int depth)\n{\n", cn);
	P("\ttlcm_fb_vtable_t t;\n\tint rc = tlcm_fb_verify_table_head(v, "
	  "pos, depth, \"%s\", &t);\n\tif (rc)\n\t\treturn rc;\n", o->name);
	for (size_t i = 0; i < o->nfields; i++) {
		const field_t *f = &o->fields[i];
		const ftype_t *t = &f->type;
		const char *fn = f->name;
		unsigned vt = vt_of(f);
		const char *req = f->required ? "true" : "false";
		if (f->deprecated || is_union_type_field(o, f))
			continue;
		P("\t{ /* %s */\n", fn);
		if (is_scalar(t->base)) {
			int sz = scalar_size(t->base);
			P("\t\tuint32_t at;\n\t\trc = tlcm_fb_verify_field(v, &t,"
			  " %u, %d, %d, %s, \"%s\", &at);\n", vt, sz, sz, req,
			  fn);
		} else if (t->base == BT_STRING) {
			P("\t\trc = tlcm_fb_verify_string_field(v, &t, %u, %s, "
			  "\"%s\");\n", vt, req, fn);
		} else if (t->base == BT_OBJ && s->objs[t->index].is_struct) {
			P("\t\tuint32_t at;\n\t\trc = tlcm_fb_verify_field(v, &t,"
			  " %u, %d, %d, %s, \"%s\", &at);\n", vt,
			  s->objs[t->index].bytesize,
			  s->objs[t->index].minalign, req, fn);
		} else if (t->base == BT_OBJ) {
			P("\t\trc = tlcm_fb_verify_table_field(v, &t, %u, %s, "
			  "\"%s\", %s_verify_table, depth);\n", vt, req, fn,
			  s->objs[t->index].cname);
		} else if (t->base == BT_UNION) {
			const field_t *tf = type_field_of(o, f);
			P("\t\tuint32_t at, target;\n\t\tuint8_t type = 0;\n"
			  "\t\trc = tlcm_fb_verify_field(v, &t, %u, 1, 1, %s, "
			  "\"%s\", &at);\n"
			  "\t\tif (!rc && at)\n\t\t\ttype = v->buf[at];\n"
			  "\t\tif (!rc)\n\t\t\trc = tlcm_fb_verify_offset(v, &t, "
			  "%u, %s, \"%s\", &target);\n"
			  "\t\tif (!rc && type && !target)\n\t\t\trc = "
			  "tlcm_fb_fail(\"%s\", \"%s\", \"union type %%u set "
			  "but value missing\", type);\n"
			  "\t\tif (!rc && type)\n\t\t\trc = %s_verify_union(v, "
			  "type, target, depth, \"%s\", \"%s\");\n",
			  vt_of(tf), req, tf->name, vt, req, fn, o->name, fn,
			  s->enums[t->index].cname, o->name, fn);
		} else if (t->element == BT_UNION) {
			const field_t *tf = type_field_of(o, f);
			P("\t\tuint32_t tp, tn, vp, vn, target;\n"
			  "\t\trc = tlcm_fb_verify_vector_field(v, &t, %u, 1, 1, "
			  "%s, \"%s\", &tp, &tn);\n"
			  "\t\tif (!rc)\n\t\t\trc = tlcm_fb_verify_vector_field(v,"
			  " &t, %u, 4, 4, %s, \"%s\", &vp, &vn);\n"
			  "\t\tif (!rc && (tn != vn || !tp != !vp))\n\t\t\trc = "
			  "tlcm_fb_fail(\"%s\", \"%s\", \"%%u types for %%u "
			  "values\", tn, vn);\n"
			  "\t\tfor (uint32_t i = 0; !rc && i < vn; i++) {\n"
			  "\t\t\tuint8_t type = v->buf[tp + 4 + i];\n"
			  "\t\t\tif (!type)\n\t\t\t\tcontinue;\n"
			  "\t\t\trc = tlcm_fb_verify_uoffset_at(v, vp + 4 + 4 * "
			  "i, \"%s\", \"%s\", &target);\n"
			  "\t\t\tif (!rc)\n\t\t\t\trc = %s_verify_union(v, type,"
			  " target, depth, \"%s\", \"%s\");\n\t\t}\n",
			  vt_of(tf), req, tf->name, vt, req, fn, o->name, fn,
			  o->name, fn, s->enums[t->index].cname, o->name, fn);
		} else { /* vector */
			int e = t->element;
			if (e == BT_STRING) {
				P("\t\trc = tlcm_fb_verify_string_vector_field(v,"
				  " &t, %u, %s, \"%s\");\n", vt, req, fn);
			} else if (e == BT_OBJ && !s->objs[t->index].is_struct) {
				P("\t\trc = tlcm_fb_verify_table_vector_field(v, "
				  "&t, %u, %s, \"%s\", %s_verify_table, "
				  "depth);\n", vt, req, fn,
				  s->objs[t->index].cname);
			} else {
				int sz = e == BT_OBJ ? s->objs[t->index].bytesize
						     : scalar_size(e);
				int al = e == BT_OBJ ? s->objs[t->index].minalign
						     : sz;
				P("\t\tuint32_t vp, n;\n\t\trc = "
				  "tlcm_fb_verify_vector_field(v, &t, %u, %d, "
				  "%d, %s, \"%s\", &vp, &n);\n", vt, sz, al, req,
				  fn);
			}
		}
		P("\t\tif (rc)\n\t\t\treturn rc;\n\t}\n");
	}
	P("\treturn 0;\n}\n");
	guard_close(g);
}

static void emit_builders(gen_t *g, const object_t *o)
{
	const schema_t *s = g->s;
	const char *cn = o->cname;
	unsigned nf = 0;
	for (size_t i = 0; i < o->nfields; i++)
		if (o->fields[i].id + 1 > nf)
			nf = o->fields[i].id + 1;
	guard_open(g, "BUILD", cn);
	P("/* table %s: builders */\n", o->name);
	name(g, "%s_start", cn);
	name(g, "%s_end", cn);
	P("static inline void %s_start(tlcm_fbb_t *b)\n{\n"
	  "\ttlcm_fbb_table_start(b, %u);\n}\n", cn, nf);
	for (size_t i = 0; i < o->nfields; i++) {
		const field_t *f = &o->fields[i];
		const ftype_t *t = &f->type;
		const char *fn = f->name;
		char tn[256], def[512];
		if (f->deprecated || is_union_type_field(o, f))
			continue;
		name(g, "%s_add_%s", cn, fn);
		if (is_scalar(t->base)) {
			int sz = scalar_size(t->base);
			scalar_cname(g, t->base, t->index, tn, sizeof tn, false);
			default_literal(g, f, def, sizeof def);
			P("static inline void %s_add_%s(tlcm_fbb_t *b, %s v)\n{\n",
			  cn, fn, tn);
			if (t->base == BT_BOOL)
				P("\tuint8_t x = v ? 1 : 0;\n");
			else
				P("\t%s x = v;\n", raw_ctype(t->base));
			if (!f->optional)
				P("\tif (v != %s)\n\t", def);
			P("\ttlcm_fbb_add_scalar(b, %u, &x, %d, %d);\n}\n", f->id,
			  sz, sz);
		} else if (t->base == BT_OBJ && s->objs[t->index].is_struct) {
			const object_t *so = &s->objs[t->index];
			P("static inline void %s_add_%s(tlcm_fbb_t *b, const %s_t "
			  "*v)\n{\n\tif (v)\n\t\ttlcm_fbb_add_scalar(b, %u, v, "
			  "%d, %d);\n}\n", cn, fn, so->cname, f->id, so->bytesize,
			  so->minalign);
		} else if (t->base == BT_UNION) {
			const field_t *tf = type_field_of(o, f);
			P("static inline void %s_add_%s(tlcm_fbb_t *b, "
			  "%s_union_type_t type,\n\t\ttlcm_fbb_ref_t value)\n{\n"
			  "\tif (type == 0 || value == 0)\n\t\treturn;\n"
			  "\ttlcm_fbb_add_scalar(b, %u, &type, 1, 1);\n"
			  "\ttlcm_fbb_add_ref(b, %u, value);\n}\n", cn, fn,
			  s->enums[t->index].cname, tf->id, f->id);
		} else if (t->base == BT_VECTOR && t->element == BT_UNION) {
			const field_t *tf = type_field_of(o, f);
			P("/* types: from %s_%s_type_create(); values: a vector "
			  "of references */\n", cn, fn);
			P("static inline void %s_add_%s(tlcm_fbb_t *b, "
			  "tlcm_fbb_ref_t types,\n\t\ttlcm_fbb_ref_t values)\n{\n"
			  "\ttlcm_fbb_add_ref(b, %u, types);\n"
			  "\ttlcm_fbb_add_ref(b, %u, values);\n}\n", cn, fn,
			  tf->id, f->id);
		} else {
			P("static inline void %s_add_%s(tlcm_fbb_t *b, "
			  "tlcm_fbb_ref_t v)\n{\n\ttlcm_fbb_add_ref(b, %u, v);\n}\n",
			  cn, fn, f->id);
		}
	}
	/* vector creators */
	for (size_t i = 0; i < o->nfields; i++) {
		const field_t *f = &o->fields[i];
		const ftype_t *t = &f->type;
		if (f->deprecated || t->base != BT_VECTOR)
			continue;
		const char *fn = f->name;
		int e = t->element;
		char tn[256];
		name(g, "%s_%s_create", cn, fn);
		if (is_scalar(e) || (e == BT_OBJ && s->objs[t->index].is_struct)) {
			int sz, al;
			if (e == BT_OBJ) {
				snprintf(tn, sizeof tn, "%s_t",
					 s->objs[t->index].cname);
				sz = s->objs[t->index].bytesize;
				al = s->objs[t->index].minalign;
			} else {
				scalar_cname(g, e, t->index, tn, sizeof tn, true);
				sz = al = scalar_size(e);
			}
			P("static inline tlcm_fbb_ref_t %s_%s_create(tlcm_fbb_t "
			  "*b, const %s *v, size_t n)\n{\n\treturn tlcm_fbb_vec(b,"
			  " v, n, %d, %d);\n}\n", cn, fn, tn, sz, al);
		} else {
			P("static inline tlcm_fbb_ref_t %s_%s_create(tlcm_fbb_t "
			  "*b, const tlcm_fbb_ref_t *v, size_t n)\n{\n\treturn "
			  "tlcm_fbb_vec_refs(b, v, n);\n}\n", cn, fn);
		}
	}
	P("static inline tlcm_fbb_ref_t %s_end(tlcm_fbb_t *b)\n{\n", cn);
	for (size_t i = 0; i < o->nfields; i++)
		if (o->fields[i].required && !o->fields[i].deprecated)
			P("\ttlcm_fbb_require(b, %u);\n", o->fields[i].id);
	P("\treturn tlcm_fbb_table_end(b);\n}\n");
	guard_close(g);
}

static void emit_root(gen_t *g, const object_t *o, bool is_root)
{
	const char *cn = o->cname;
	const char *id = is_root ? g->s->file_ident : NULL;
	char idlit[16];
	snprintf(idlit, sizeof idlit, id ? "\"%s\"" : "NULL", id);
	guard_open(g, "ROOT", cn);
	name(g, "%s_as_root", cn);
	name(g, "%s_finish", cn);
	if (id)
		P("#define %s_IDENTIFIER \"%s\"\n", cn, id);
	P("#define %s_TYPE_NAME \"%s\"\n", cn, o->name);
	P("static inline %s_table_t %s_as_root(const void *buf)\n{\n"
	  "\treturn (%s_table_t)tlcm_fb_root(buf);\n}\n", cn, cn, cn);
	P("static inline %s_table_t %s_as_root_size_prefixed(const void *buf)"
	  "\n{\n\treturn (%s_table_t)tlcm_fb_root_size_prefixed(buf);\n}\n",
	  cn, cn, cn);
	P("/* 0 when buf[0..len) is a valid %s%s%s%s; else TLCM_EBADMSG and "
	  "*why says what is wrong. */\n", o->name,
	  id ? " with identifier \"" : "", id ? id : "", id ? "\"" : "");
	P("static inline int %s_verify_as_root(const void *buf, size_t len, "
	  "const char **why)\n{\n\treturn tlcm_fb_verify_buffer(buf, len, %s,"
	  " false, \"%s\",\n\t\t\t\t     %s_verify_table, why);\n}\n", cn,
	  idlit, o->name, cn);
	P("static inline int %s_verify_as_root_size_prefixed(const void *buf, "
	  "size_t len,\n\t\tconst char **why)\n{\n\treturn "
	  "tlcm_fb_verify_buffer(buf, len, %s, true, \"%s\",\n\t\t\t\t     "
	  "%s_verify_table, why);\n}\n", cn, idlit, o->name, cn);
	P("static inline const void *%s_finish(tlcm_fbb_t *b, tlcm_fbb_ref_t "
	  "root, size_t *size)\n{\n\treturn tlcm_fbb_finish(b, root, %s, "
	  "size);\n}\n", cn, idlit);
	P("static inline const void *%s_finish_size_prefixed(tlcm_fbb_t *b, "
	  "tlcm_fbb_ref_t root,\n\t\tsize_t *size)\n{\n\treturn "
	  "tlcm_fbb_finish_size_prefixed(b, root, %s, size);\n}\n", cn, idlit);
	guard_close(g);
}

static int emit(gen_t *g, const char *guard)
{
	schema_t *s = (schema_t *)g->s;
	P("/* Generated by tinylcm-fbgen %s from %s. Do not edit. */\n",
	  TINYLCM_VERSION, g->src);
	P("#ifndef %s\n#define %s\n\n", guard, guard);
	P("#include <math.h>\n#include <stdbool.h>\n#include <stddef.h>\n"
	  "#include <stdint.h>\n\n#include \"engine/fb/fb.h\"\n\n");
	if (s->file_ident)
		P("/* file_identifier \"%s\"%s%s */\n\n", s->file_ident,
		  s->root >= 0 ? ", root_type " : "",
		  s->root >= 0 ? s->objs[s->root].name : "");
	for (size_t i = 0; i < s->nenums; i++)
		emit_enum(g, &s->enums[i]);
	for (size_t i = 0; i < s->nobjs; i++)
		if (s->objs[i].is_struct)
			emit_struct(g, &s->objs[i]);
	for (size_t i = 0; i < s->nobjs; i++) {
		if (s->objs[i].is_struct)
			continue;
		guard_open(g, "TABLE", s->objs[i].cname);
		P("typedef const struct %s_table *%s_table_t;\n"
		  "static inline int %s_verify_table(tlcm_fb_verifier_t *v, "
		  "uint32_t pos, int depth);\n", s->objs[i].cname,
		  s->objs[i].cname, s->objs[i].cname);
		guard_close(g);
	}
	for (size_t i = 0; i < s->nobjs; i++) {
		if (s->objs[i].is_struct)
			continue;
		names_reset(g);
		emit_readers(g, &s->objs[i]);
		emit_builders(g, &s->objs[i]);
		emit_root(g, &s->objs[i], (int)i == s->root);
	}
	for (size_t i = 0; i < s->nenums; i++)
		if (s->enums[i].is_union)
			emit_union_verifier(g, &s->enums[i]);
	for (size_t i = 0; i < s->nobjs; i++)
		if (!s->objs[i].is_struct)
			emit_verifier(g, &s->objs[i]);
	P("#endif /* %s */\n", guard);
	names_reset(g);
	free(g->names);
	return g->err ? -1 : 0;
}

/* ---- command line --------------------------------------------------------- */

static void schema_free(schema_t *s)
{
	for (size_t i = 0; s->objs && i < s->nobjs; i++) {
		object_t *o = &s->objs[i];
		for (size_t j = 0; o->fields && j < o->nfields; j++)
			free(o->fields[j].name);
		free(o->fields);
		free(o->name);
		free(o->cname);
	}
	for (size_t i = 0; s->enums && i < s->nenums; i++) {
		enum_t *e = &s->enums[i];
		for (size_t j = 0; e->vals && j < e->nvals; j++)
			free(e->vals[j].name);
		free(e->vals);
		free(e->name);
		free(e->cname);
	}
	free(s->objs);
	free(s->enums);
	free(s->file_ident);
	memset(s, 0, sizeof *s);
}

/* Parse and validate; on bad input print why and return -1. */
static int load_schema(const char *path, const uint8_t *data, size_t len,
		       schema_t *s)
{
	static rd_t r; /* static: nothing here is live across longjmp */
	r.b = data;
	r.n = len;
	if (setjmp(r.jb)) {
		fprintf(stderr, "tinylcm-fbgen: %s: %s\n", path, r.err);
		schema_free(s);
		return -1;
	}
	read_schema(&r, s);
	validate(&r, s);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tinylcm-fbgen [-o OUTDIR] SCHEMA.bfbs\n"
		"\n"
		"Generate a C header (OUTDIR/SCHEMA_fb.h) with readers, a verifier\n"
		"and builders for a FlatBuffers schema. The input is the binary\n"
		"schema made by `flatc --schema -b SCHEMA.fbs`.\n"
		"\n"
		"  -o OUTDIR     directory for the header (default: .)\n"
		"  -h, --help    show this help\n"
		"  --version     print the version\n"
		"\n"
		"Exit status: 0 on success, 1 on bad input or I/O error, 2 on usage.\n");
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "tinylcm-fbgen: cannot open %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *b = malloc(cap);
	while (b) {
		if (n == cap) {
			if (cap >= MAX_SCHEMA_BYTES) {
				fprintf(stderr, "tinylcm-fbgen: %s: larger than "
					"%u MiB, not a schema\n", path,
					MAX_SCHEMA_BYTES >> 20);
				free(b);
				fclose(f);
				return -1;
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
		size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (!b || ferror(f)) {
		fprintf(stderr, "tinylcm-fbgen: cannot read %s: %s\n", path,
			b ? strerror(errno) : "out of memory");
		free(b);
		fclose(f);
		return -1;
	}
	fclose(f);
	*out = b;
	*len = n;
	return 0;
}

/* Emit OUTDIR/STEM_fb.h through a temporary file and rename, so a failed
 * run never leaves a half-written header behind. */
static int write_header(const char *in, const char *outdir, const schema_t *s)
{
	/* header name and guard from the input's base name */
	const char *base = strrchr(in, '/');
	base = base ? base + 1 : in;
	size_t bl = strlen(base);
	if (bl > 5 && !strcmp(base + bl - 5, ".bfbs"))
		bl -= 5;
	char stem[256], guard[300], path[4096], tmp[4200];
	if (bl == 0 || bl >= sizeof stem) {
		fprintf(stderr, "tinylcm-fbgen: %s: bad file name\n", in);
		return -1;
	}
	memcpy(stem, base, bl);
	stem[bl] = 0;
	snprintf(guard, sizeof guard, "TLCM_FB_GEN_%s_H", stem);
	for (char *p = guard; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			*p = (*p >= 'a' && *p <= 'z') ? (char)(*p - 32) : '_';
	snprintf(path, sizeof path, "%s/%s_fb.h", outdir, stem);
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());

	FILE *out = fopen(tmp, "w");
	if (!out) {
		fprintf(stderr, "tinylcm-fbgen: cannot create %s: %s\n", tmp,
			strerror(errno));
		return -1;
	}
	gen_t g = {.out = out, .s = s, .src = base};
	int rc = emit(&g, guard);
	if (fclose(out) != 0 && rc == 0) {
		fprintf(stderr, "tinylcm-fbgen: cannot write %s: %s\n", tmp,
			strerror(errno));
		rc = -1;
	}
	if (rc == 0 && rename(tmp, path) != 0) {
		fprintf(stderr, "tinylcm-fbgen: cannot rename %s to %s: %s\n",
			tmp, path, strerror(errno));
		rc = -1;
	}
	if (rc)
		unlink(tmp);
	return rc;
}

int main(int argc, char **argv)
{
	const char *outdir = ".", *in = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("tinylcm-fbgen %s\n", TINYLCM_VERSION);
			return 0;
		} else if (!strcmp(argv[i], "-o")) {
			if (++i >= argc) {
				fprintf(stderr, "tinylcm-fbgen: -o needs a "
					"directory\n");
				return 2;
			}
			outdir = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "tinylcm-fbgen: unknown option %s\n",
				argv[i]);
			usage(stderr);
			return 2;
		} else if (in) {
			fprintf(stderr, "tinylcm-fbgen: one schema at a time "
				"(got %s and %s)\n", in, argv[i]);
			return 2;
		} else {
			in = argv[i];
		}
	}
	if (!in) {
		usage(stderr);
		return 2;
	}

	uint8_t *data;
	size_t len;
	if (read_file(in, &data, &len))
		return 1;

	schema_t s = {0};
	int bad = load_schema(in, data, len, &s);
	free(data);
	if (bad)
		return 1;

	int rc = write_header(in, outdir, &s);
	schema_free(&s);
	return rc ? 1 : 0;
}
