/* test_fb_build.c — builders: round trip, fixed buffers, errors.
 *
 * Builds the messages that tests/fb/json_oracle.py hands to flatc (the
 * oracle) and checks everything flatc cannot see: fixed-buffer building is
 * byte-identical to growable building and never overflows, errors are
 * sticky, API misuse is refused, vtables are shared, union vectors and
 * non-table unions round-trip through our own verifier and readers.
 * usage: test_fb_build OUTDIR   (writes built_all.bin, built_all_sp.bin)
 */
#include <errno.h>
#include <stdalign.h>

#include "tests/tlcm_test.h"
#include "tests/fb/walk.h"

static tlcm_fbb_ref_t leaf(tlcm_fbb_t *b, const char *name, int v)
{
	tlcm_fbb_ref_t n = name ? tlcm_fbb_cstring(b, name) : 0;
	t_all_Leaf_start(b);
	t_all_Leaf_add_name(b, n);
	t_all_Leaf_add_v(b, v);
	return t_all_Leaf_end(b);
}

static tlcm_fbb_ref_t item(tlcm_fbb_t *b, uint32_t id, const char *label,
			   tlcm_fbb_ref_t lf)
{
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(b, label);
	t_all_Item_start(b);
	t_all_Item_add_id(b, id);
	t_all_Item_add_label(b, l);
	t_all_Item_add_leaf(b, lf);
	return t_all_Item_end(b);
}

/* The message described in tests/fb/data/built_all.expected.json. */
static tlcm_fbb_ref_t build_all(tlcm_fbb_t *b)
{
	tlcm_fbb_ref_t name = tlcm_fbb_cstring(b, "built");
	tlcm_fbb_ref_t lf = leaf(b, "L", 3);
	int32_t ints[] = {5, 6};
	tlcm_fbb_ref_t vints = t_all_All_ints_create(b, ints, 2);
	uint8_t bytes[] = {1, 2, 3};
	tlcm_fbb_ref_t vbytes = t_all_All_bytes_create(b, bytes, 3);
	uint8_t bools[] = {0, 1};
	tlcm_fbb_ref_t vbools = t_all_All_bools_create(b, bools, 2);
	double dbl[] = {0.25};
	tlcm_fbb_ref_t vdbl = t_all_All_doubles_create(b, dbl, 1);
	uint64_t longs[] = {1, UINT64_MAX};
	tlcm_fbb_ref_t vlongs = t_all_All_longs_create(b, longs, 2);
	t_all_Color_enum_t colors[] = {t_all_Color_Red, t_all_Color_Blue};
	tlcm_fbb_ref_t vcolors = t_all_All_colors_create(b, colors, 2);
	t_geom_Axis_enum_t axes[] = {t_geom_Axis_Z};
	tlcm_fbb_ref_t vaxes = t_all_All_axes_create(b, axes, 1);
	t_geom_Vec3_t vecs[] = {{.x = 0.5f, .y = 0.5f, .z = 0.5f},
				{.x = -1, .y = -1, .z = -1}};
	tlcm_fbb_ref_t vvecs = t_all_All_vecs_create(b, vecs, 2);
	tlcm_fbb_ref_t s[2] = {tlcm_fbb_cstring(b, "x"),
			       tlcm_fbb_string(b, "yyz", 2)};
	tlcm_fbb_ref_t vstrs = t_all_All_strs_create(b, s, 2);
	tlcm_fbb_ref_t it[2] = {item(b, 1, "i1", 0),
				item(b, 2, "i2", leaf(b, NULL, 9))};
	tlcm_fbb_ref_t vitems = t_all_All_items_create(b, it, 2);
	tlcm_fbb_ref_t os = tlcm_fbb_cstring(b, "o");
	t_all_Other_start(b);
	t_all_Other_add_s(b, os);
	tlcm_fbb_ref_t other = t_all_Other_end(b);
	tlcm_fbb_ref_t nname = tlcm_fbb_cstring(b, "n");
	t_all_All_start(b);
	t_all_All_add_name(b, nname);
	t_all_All_add_i32(b, 0);
	tlcm_fbb_ref_t nested = t_all_All_end(b);
	tlcm_fbb_ref_t kids[2];
	t_all_All_start(b);
	kids[0] = t_all_All_end(b);
	tlcm_fbb_ref_t kname = tlcm_fbb_cstring(b, "kid");
	t_all_All_start(b);
	t_all_All_add_name(b, kname);
	kids[1] = t_all_All_end(b);
	tlcm_fbb_ref_t vkids = t_all_All_children_create(b, kids, 2);

	t_geom_Vec3_t pos = {.x = 1, .y = 2, .z = 3};
	t_geom_Pose_t pose = {.pos = {.z = 1}, .flag = 1, .id = 99,
			      .small = -1};
	t_geom_Arr_t arr = {.a = {1, 2, 3}, .axis = t_geom_Axis_Y,
			    .v = {{1, 1, 1}, {2, 2, 2}}, .b = -2};
	t_geom_Wide_t wide = {.a = 3};

	t_all_All_start(b);
	t_all_All_add_b(b, false);
	t_all_All_add_i8(b, -5);
	t_all_All_add_u8(b, 200); /* the default: not written */
	t_all_All_add_i16(b, 1234);
	t_all_All_add_u16(b, 0);
	t_all_All_add_i32(b, -1);
	t_all_All_add_u32(b, 7);
	t_all_All_add_i64(b, -INT64_MAX);
	t_all_All_add_u64(b, UINT64_MAX);
	t_all_All_add_f32(b, 0.5f);
	t_all_All_add_f64(b, 0.001);
	t_all_All_add_color(b, t_all_Color_Green);
	t_all_All_add_flags(b, t_all_Flags_A | t_all_Flags_B);
	t_all_All_add_opt_i(b, 0); /* optional: written although 0 */
	t_all_All_add_opt_b(b, true);
	t_all_All_add_name(b, name);
	t_all_All_add_pos(b, &pos);
	t_all_All_add_pose(b, &pose);
	t_all_All_add_arr(b, &arr);
	t_all_All_add_wide(b, &wide);
	t_all_All_add_leaf(b, lf);
	t_all_All_add_ints(b, vints);
	t_all_All_add_bytes(b, vbytes);
	t_all_All_add_bools(b, vbools);
	t_all_All_add_doubles(b, vdbl);
	t_all_All_add_longs(b, vlongs);
	t_all_All_add_colors(b, vcolors);
	t_all_All_add_axes(b, vaxes);
	t_all_All_add_vecs(b, vvecs);
	t_all_All_add_strs(b, vstrs);
	t_all_All_add_items(b, vitems);
	t_all_All_add_any(b, t_all_Any_other, other);
	t_all_All_add_nested(b, nested);
	t_all_All_add_children(b, vkids);
	t_all_All_add_inf_d(b, 2.0);
	t_all_All_add_nan_f(b, -0.5f);
	t_all_All_add_ninf_f(b, -INFINITY); /* the default: not written */
	t_all_All_add_min_i64(b, 0);
	return t_all_All_end(b);
}

static void check_all(const void *buf, size_t len)
{
	const char *why;
	CHECK_INT(t_all_All_verify_as_root(buf, len, &why), 0);
	CHECK_STR(why, "");
	t_all_All_table_t t = t_all_All_as_root(buf);
	CHECK_INT(t_all_All_b(t), 0);
	CHECK_INT(t_all_All_i8(t), -5);
	CHECK(!t_all_All_u8_is_present(t));
	CHECK_UINT(t_all_All_u8(t), 200);
	CHECK_UINT(t_all_All_u16(t), 0);
	CHECK_UINT(t_all_All_u64(t), UINT64_MAX);
	CHECK_DBL(t_all_All_f64(t), 0.001);
	CHECK_UINT(t_all_All_flags(t), 3);
	CHECK(t_all_All_opt_i_is_present(t));
	CHECK(!t_all_All_opt_f_is_present(t));
	CHECK_STR(t_all_All_name(t), "built");
	CHECK_INT(t_all_All_arr(t)->v[1].y, 2);
	CHECK_INT((uintptr_t)t_all_All_wide(t) % 16, 0);
	CHECK_INT((uintptr_t)t_all_All_pose(t) % 8, 0);
	CHECK_STR(t_all_All_strs_at(t, 1), "yy");
	CHECK_STR(t_all_Item_label(t_all_All_items_at(t, 1)), "i2");
	CHECK_INT(t_all_Leaf_v(t_all_Item_leaf(t_all_All_items_at(t, 1))), 9);
	CHECK_STR(t_all_Other_s(t_all_All_any_as_other(t)), "o");
	CHECK_STR(t_all_All_name(t_all_All_children_at(t, 1)), "kid");
	CHECK(!t_all_All_ninf_f_is_present(t));
	CHECK(t_all_All_nan_f_is_present(t));
	CHECK(walk_all(t) != 0);
}

static void write_file(const char *dir, const char *name, const void *buf,
		       size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_UINT(fwrite(buf, 1, len, f), len);
	CHECK_INT(fclose(f), 0);
}

static void growable_and_fixed(const char *outdir)
{
	tlcm_fbb_t b;
	CHECK_INT(tlcm_fbb_init(&b, 16), 0); /* tiny: forces growth */
	size_t len;
	const void *buf = t_all_All_finish(&b, build_all(&b), &len);
	CHECK(buf != NULL);
	CHECK_INT(tlcm_fbb_error(&b), 0);
	CHECK_INT((uintptr_t)buf % 16, 0);
	check_all(buf, len);
	write_file(outdir, "built_all.bin", buf, len);

	/* the same message in caller memory is byte-identical */
	static alignas(16) unsigned char mem[8192];
	tlcm_fbb_t f;
	tlcm_fbb_init_fixed(&f, mem, sizeof mem);
	size_t flen;
	const void *fbuf = t_all_All_finish(&f, build_all(&f), &flen);
	CHECK(fbuf != NULL);
	CHECK_UINT(flen, len);
	CHECK(fbuf && memcmp(fbuf, buf, len) == 0);
	CHECK(fbuf == mem + sizeof mem - flen);
	tlcm_fbb_fini(&f);

	/* every capacity too small fails with ENOSPC and writes nothing
	 * outside the given memory (guard bytes on both sides) */
	unsigned char *space = malloc(len + 64);
	int enospc = 0;
	for (size_t cap = 0; cap < len; cap += 8) {
		memset(space, 0xAB, len + 64);
		tlcm_fbb_init_fixed(&f, space + 32, cap);
		const void *r = t_all_All_finish(&f, build_all(&f), NULL);
		enospc += r == NULL && tlcm_fbb_error(&f) == TLCM_ENOSPC;
		int guard_ok = 1;
		for (size_t i = 0; i < 32; i++)
			guard_ok &= space[i] == 0xAB &&
				    space[32 + cap + i] == 0xAB;
		CHECK(guard_ok);
		tlcm_fbb_fini(&f);
	}
	CHECK_INT(enospc, (len + 7) / 8);
	free(space);

	/* size-prefixed */
	tlcm_fbb_reset(&b);
	buf = t_all_All_finish_size_prefixed(&b, build_all(&b), &len);
	CHECK(buf != NULL);
	const char *why;
	CHECK_INT(t_all_All_verify_as_root_size_prefixed(buf, len, &why), 0);
	CHECK_UINT(tlcm_fb_load_u32(buf), len - 4);
	CHECK_STR(t_all_All_name(t_all_All_as_root_size_prefixed(buf)),
		  "built");
	CHECK(t_all_All_verify_as_root(buf, len, &why) != 0);
	write_file(outdir, "built_all_sp.bin", buf, len);
	tlcm_fbb_fini(&b);
}

static void misuse(void)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);

	/* a string while a table is open: refused, and the error sticks */
	t_all_Leaf_start(&b);
	CHECK_UINT(tlcm_fbb_cstring(&b, "late"), 0);
	CHECK_INT(tlcm_fbb_error(&b), TLCM_EINVAL);
	CHECK_UINT(t_all_Leaf_end(&b), 0);
	CHECK(t_all_Leaf_finish(&b, 1, NULL) == NULL);

	/* nested table start */
	tlcm_fbb_reset(&b);
	t_all_Leaf_start(&b);
	t_all_Leaf_start(&b);
	CHECK_INT(tlcm_fbb_error(&b), TLCM_EINVAL);

	/* a required field left out */
	tlcm_fbb_reset(&b);
	t_all_Item_start(&b);
	t_all_Item_add_id(&b, 1);
	CHECK_UINT(t_all_Item_end(&b), 0);
	CHECK_INT(tlcm_fbb_error(&b), TLCM_EINVAL);

	/* finish with no root, or inside a table */
	tlcm_fbb_reset(&b);
	CHECK(t_all_All_finish(&b, 0, NULL) == NULL);
	tlcm_fbb_reset(&b);
	t_all_All_start(&b);
	CHECK(t_all_All_finish(&b, 4, NULL) == NULL);

	/* a reference that does not exist */
	tlcm_fbb_reset(&b);
	tlcm_fbb_ref_t bogus[1] = {12345};
	CHECK_UINT(tlcm_fbb_vec_refs(&b, bogus, 1), 0);
	CHECK_INT(tlcm_fbb_error(&b), TLCM_EINVAL);

	/* reset clears the error and the builder works again */
	tlcm_fbb_reset(&b);
	size_t len;
	const void *buf = t_all_Leaf_finish(&b, leaf(&b, "ok", 1), &len);
	CHECK(buf != NULL);
	const char *why;
	CHECK_INT(t_all_Leaf_verify_as_root(buf, len, &why), 0);
	CHECK_STR(t_all_Leaf_name(t_all_Leaf_as_root(buf)), "ok");
	tlcm_fbb_fini(&b);

	/* fixed memory whose end is misaligned for the message */
	static alignas(16) unsigned char mem[256];
	tlcm_fbb_init_fixed(&b, mem, sizeof mem - 3);
	CHECK(t_all_Leaf_finish(&b, leaf(&b, "x", 1), NULL) == NULL);
	CHECK_INT(tlcm_fbb_error(&b), TLCM_EINVAL);
}

static void vtable_sharing_and_zero_copy(void)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);
	CHECK(leaf(&b, NULL, 5) != 0);
	CHECK(t_all_All_children_create(&b, NULL, 0) != 0);
	size_t after_one = b.used;
	CHECK(leaf(&b, NULL, 6) != 0);
	/* a table with one int field: 4 soffset + 4 int, and no new vtable */
	CHECK_UINT(b.used - after_one, 8);

	/* regression: an empty table's 4-byte vtable at the very end of the
	 * buffer must not be compared past its end by a later, larger one
	 * (ASan caught the builder doing that) */
	tlcm_fbb_reset(&b);
	t_all_Other_start(&b);
	tlcm_fbb_ref_t empty = t_all_Other_end(&b);
	tlcm_fbb_ref_t big = leaf(&b, NULL, 77);
	CHECK(empty != 0 && big != 0);
	size_t elen;
	const void *ebuf = t_all_Leaf_finish(&b, big, &elen);
	const char *ewhy;
	CHECK_INT(t_all_Leaf_verify_as_root(ebuf, elen, &ewhy), 0);
	CHECK_INT(t_all_Leaf_v(t_all_Leaf_as_root(ebuf)), 77);

	tlcm_fbb_reset(&b);
	float *feat;
	tlcm_fbb_ref_t fv = tlcm_fbb_vec_alloc(&b, 256, sizeof(float),
					       alignof(float), (void **)&feat);
	CHECK(fv != 0 && feat != NULL);
	for (int i = 0; feat && i < 256; i++)
		feat[i] = (float)i * 0.5f;
	double d[] = {1};
	tlcm_fbb_ref_t dv = t_all_All_doubles_create(&b, d, 1);
	t_all_All_start(&b);
	t_all_All_add_doubles(&b, dv);
	t_all_All_add_bytes(&b, fv); /* 1024 raw bytes, read back as ubyte */
	size_t len;
	const void *buf = t_all_All_finish(&b, t_all_All_end(&b), &len);
	const char *why;
	CHECK_INT(t_all_All_verify_as_root(buf, len, &why), 0);
	t_all_All_table_t t = t_all_All_as_root(buf);
	CHECK_UINT(t_all_All_bytes_len(t), 256);
	tlcm_fbb_fini(&b);
}

static void advanced_round_trip(void)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);
	t_adv_A_start(&b);
	t_adv_A_add_v(&b, 11);
	tlcm_fbb_ref_t a = t_adv_A_end(&b);
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(&b, "b-string");
	t_adv_B_start(&b);
	t_adv_B_add_s(&b, s);
	tlcm_fbb_ref_t bb = t_adv_B_end(&b);
	t_adv_U_union_type_t types[] = {t_adv_U_B, t_adv_U_A};
	tlcm_fbb_ref_t vals[] = {bb, a};
	tlcm_fbb_ref_t tv = t_adv_Root_us_type_create(&b, types, 2);
	tlcm_fbb_ref_t vv = t_adv_Root_us_create(&b, vals, 2);
	t_adv_Pt_t pt = {.x = -1, .y = 2};
	tlcm_fbb_ref_t ptr = tlcm_fbb_struct(&b, &pt, sizeof pt, alignof(t_adv_Pt_t));
	tlcm_fbb_ref_t txt = tlcm_fbb_cstring(&b, "wtext");
	tlcm_fbb_ref_t bs = tlcm_fbb_cstring(&b, "B");
	t_adv_Explicit_start(&b);
	t_adv_Explicit_add_c(&b, 30);
	t_adv_Explicit_add_b(&b, bs);
	t_adv_Explicit_add_a(&b, 10);
	tlcm_fbb_ref_t x = t_adv_Explicit_end(&b);
	tlcm_fbb_ref_t req = tlcm_fbb_cstring(&b, "r");
	t_adv_Root_start(&b);
	t_adv_Root_add_us(&b, tv, vv);
	t_adv_Root_add_v(&b, t_adv_V_pt, ptr);
	t_adv_Root_add_w(&b, t_adv_V_txt, txt);
	t_adv_Root_add_x(&b, x);
	t_adv_Root_add_req(&b, req);
	size_t len;
	const void *buf = t_adv_Root_finish(&b, t_adv_Root_end(&b), &len);
	CHECK(buf != NULL);
	const char *why;
	CHECK_INT(t_adv_Root_verify_as_root(buf, len, &why), 0);
	CHECK_STR(why, "");
	t_adv_Root_table_t r = t_adv_Root_as_root(buf);
	CHECK_UINT(t_adv_Root_us_len(r), 2);
	CHECK_INT(t_adv_Root_us_type_at(r, 0), t_adv_U_B);
	CHECK_STR(t_adv_B_s((t_adv_B_table_t)t_adv_Root_us_at(r, 0)),
		  "b-string");
	CHECK_INT(t_adv_A_v((t_adv_A_table_t)t_adv_Root_us_at(r, 1)), 11);
	CHECK(t_adv_Root_v_as_pt(r) && t_adv_Root_v_as_pt(r)->x == -1 &&
	      t_adv_Root_v_as_pt(r)->y == 2);
	CHECK_STR(t_adv_Root_w_as_txt(r), "wtext");
	CHECK_INT(t_adv_Explicit_a(t_adv_Root_x(r)), 10);
	CHECK_STR(t_adv_Explicit_b(t_adv_Root_x(r)), "B");
	CHECK_INT(t_adv_Explicit_c(t_adv_Root_x(r)), 30);
	CHECK_STR(t_adv_Root_req(r), "r");
	tlcm_fbb_fini(&b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	growable_and_fixed(argv[1]);
	misuse();
	vtable_sharing_and_zero_copy();
	advanced_round_trip();
	return tlcm_test_done();
}
