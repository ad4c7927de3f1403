/* test_fb_read.c — generated readers against flatc as the oracle.
 *
 * The buffers were made by `flatc -b` from the JSON files in tests/fb/data;
 * every value asserted here is the one written in that JSON (or the
 * schema's default where the JSON leaves a field out).
 * usage: test_fb_read alltypes_full.bin alltypes_empty.bin advanced.bin
 */
#include "tests/tlcm_test.h"
#include "tests/fb/walk.h"

static void full(const char *path)
{
	size_t len;
	unsigned char *buf = tlcm_test_read_file(path, &len);
	const char *why;
	CHECK_INT(t_all_All_verify_as_root(buf, len, &why), 0);
	CHECK_STR(why, "");
	CHECK(tlcm_fb_has_identifier(buf, len, t_all_All_IDENTIFIER));
	t_all_All_table_t t = t_all_All_as_root(buf);

	CHECK_INT(t_all_All_b(t), 0);
	CHECK(t_all_All_b_is_present(t));
	CHECK_INT(t_all_All_i8(t), -128);
	CHECK_UINT(t_all_All_u8(t), 255);
	CHECK_INT(t_all_All_i16(t), -32768);
	CHECK_UINT(t_all_All_u16(t), 65535);
	CHECK_INT(t_all_All_i32(t), INT32_MIN);
	CHECK_UINT(t_all_All_u32(t), UINT32_MAX);
	CHECK_INT(t_all_All_i64(t), -INT64_MAX);
	CHECK_UINT(t_all_All_u64(t), UINT64_MAX);
	CHECK_DBL(t_all_All_f32(t), -0.25);
	CHECK_DBL(t_all_All_f64(t), 3.0e300);
	CHECK_INT(t_all_All_color(t), t_all_Color_Red);
	CHECK_STR(t_all_Color_name(t_all_All_color(t)), "Red");
	CHECK_UINT(t_all_All_flags(t), t_all_Flags_A | t_all_Flags_C);
	CHECK_UINT(t_all_Flags_C, UINT64_C(1) << 63);
	CHECK(t_all_All_opt_i_is_present(t));
	CHECK_INT(t_all_All_opt_i(t), 0);
	CHECK(t_all_All_opt_f_is_present(t));
	CHECK_DBL(t_all_All_opt_f(t), 2.5);
	CHECK(t_all_All_opt_b_is_present(t));
	CHECK_INT(t_all_All_opt_b(t), 0);
	CHECK_STR(t_all_All_name(t), "h\xc3\xa9llo w\xc3\xb6rld");
	CHECK_UINT(t_all_All_name_len(t), 13);

	const t_geom_Vec3_t *pos = t_all_All_pos(t);
	CHECK(pos && pos->x == 1.0f && pos->y == -2.0f && pos->z == 0.5f);
	const t_geom_Pose_t *pose = t_all_All_pose(t);
	CHECK(pose != NULL);
	if (pose) {
		CHECK_DBL(pose->pos.z, 6.0);
		CHECK_INT(pose->flag, 1);
		CHECK_UINT(pose->id, 12345678901234ull);
		CHECK_INT(pose->small, -3);
	}
	const t_geom_Arr_t *arr = t_all_All_arr(t);
	CHECK(arr != NULL);
	if (arr) {
		CHECK_INT(arr->a[0], 10);
		CHECK_INT(arr->a[1], -20);
		CHECK_INT(arr->a[2], 30);
		CHECK_INT(arr->axis, t_geom_Axis_Z);
		CHECK_DBL(arr->v[1].z, -3.0);
		CHECK_INT(arr->b, 127);
	}
	CHECK(t_all_All_wide(t) && t_all_All_wide(t)->a == -7);
	CHECK_INT((uintptr_t)t_all_All_wide(t) % 16, 0);

	t_all_Leaf_table_t leaf = t_all_All_leaf(t);
	CHECK_STR(t_all_Leaf_name(leaf), "leaf0");
	CHECK_INT(t_all_Leaf_v(leaf), 42);

	CHECK_UINT(t_all_All_ints_len(t), 3);
	CHECK_INT(t_all_All_ints_at(t, 1), -2);
	CHECK_INT(t_all_All_ints(t)[2], 2147483647);
	CHECK_INT(t_all_All_ints_at(t, 3), 0); /* out of range */
	CHECK_UINT(t_all_All_bytes_len(t), 3);
	CHECK_UINT(t_all_All_bytes_at(t, 1), 128);
	CHECK_UINT(t_all_All_bools_len(t), 3);
	CHECK_INT(t_all_All_bools_at(t, 0), 1);
	CHECK_INT(t_all_All_bools_at(t, 1), 0);
	CHECK_DBL(t_all_All_doubles_at(t, 1), -1.0e-300);
	CHECK_UINT(t_all_All_longs_at(t, 0), UINT64_MAX);
	CHECK_UINT(t_all_All_colors_len(t), 3);
	CHECK_INT(t_all_All_colors_at(t, 0), t_all_Color_Blue);
	CHECK_INT(t_all_All_colors_at(t, 2), t_all_Color_Red);
	CHECK_INT(t_all_All_axes_at(t, 0), t_geom_Axis_Y);
	CHECK_UINT(t_all_All_vecs_len(t), 1);
	CHECK_DBL(t_all_All_vecs_at(t, 0)->z, 0.75);
	CHECK(t_all_All_vecs_at(t, 1) == NULL);
	CHECK_UINT(t_all_All_strs_len(t), 3);
	CHECK_STR(t_all_All_strs_at(t, 1), "");
	CHECK_STR(t_all_All_strs_at(t, 2), "ccc");
	CHECK(t_all_All_strs_at(t, 3) == NULL);
	CHECK_UINT(t_all_All_items_len(t), 2);
	CHECK_STR(t_all_Item_label(t_all_All_items_at(t, 1)), "two");
	CHECK_INT(t_all_Leaf_v(t_all_Item_leaf(t_all_All_items_at(t, 1))), 7);
	CHECK(t_all_Leaf_name(t_all_Item_leaf(t_all_All_items_at(t, 1))) ==
	      NULL);

	CHECK_INT(t_all_All_any_type(t), t_all_Any_Item);
	CHECK_STR(t_all_Any_name(t_all_All_any_type(t)), "Item");
	CHECK(t_all_All_any_as_Leaf(t) == NULL);
	CHECK_UINT(t_all_Item_id(t_all_All_any_as_Item(t)), 99);
	CHECK_STR(t_all_Item_label(t_all_All_any_as_Item(t)), "any-item");

	t_all_All_table_t n = t_all_All_nested(t);
	CHECK_STR(t_all_All_name(n), "child");
	CHECK_INT(t_all_All_i32(n), 5);
	CHECK_INT(t_all_All_i8(n), -8); /* default inside a sub-table */
	CHECK_STR(t_all_All_name(t_all_All_nested(n)), "grandchild");
	CHECK(t_all_All_nested(t_all_All_nested(n)) == NULL);
	CHECK_UINT(t_all_All_children_len(t), 2);
	CHECK_STR(t_all_All_name(t_all_All_children_at(t, 0)), "c0");
	CHECK_UINT(t_all_All_u8(t_all_All_children_at(t, 1)), 1);
	CHECK_DBL(t_all_All_inf_d(t), 1.0);
	CHECK_DBL(t_all_All_nan_f(t), 2.0);
	CHECK_DBL(t_all_All_ninf_f(t), 3.0);
	CHECK_INT(t_all_All_min_i64(t), INT64_MAX);
	free(buf);
}

static void empty(const char *path)
{
	size_t len;
	unsigned char *buf = tlcm_test_read_file(path, &len);
	const char *why;
	CHECK_INT(t_all_All_verify_as_root(buf, len, &why), 0);
	t_all_All_table_t t = t_all_All_as_root(buf);
	CHECK(t != NULL);
	CHECK_INT(t_all_All_b(t), 1);
	CHECK(!t_all_All_b_is_present(t));
	CHECK_INT(t_all_All_i8(t), -8);
	CHECK_UINT(t_all_All_u8(t), 200);
	CHECK_INT(t_all_All_i16(t), -1600);
	CHECK_UINT(t_all_All_u16(t), 60000);
	CHECK_INT(t_all_All_i32(t), -2000000000);
	CHECK_UINT(t_all_All_u32(t), 4000000000u);
	CHECK_INT(t_all_All_i64(t), -9000000000000000000ll);
	CHECK_UINT(t_all_All_u64(t), 9000000000000000000ull);
	CHECK_DBL(t_all_All_f32(t), 1.5);
	CHECK_DBL(t_all_All_f64(t), -2.25);
	CHECK_INT(t_all_All_color(t), t_all_Color_Blue);
	CHECK_UINT(t_all_All_flags(t), t_all_Flags_B);
	CHECK(!t_all_All_opt_i_is_present(t));
	CHECK(!t_all_All_opt_f_is_present(t));
	CHECK(!t_all_All_opt_b_is_present(t));
	CHECK_INT(t_all_All_opt_i(t), 0);
	CHECK(t_all_All_name(t) == NULL);
	CHECK_UINT(t_all_All_name_len(t), 0);
	CHECK(t_all_All_pos(t) == NULL);
	CHECK(t_all_All_leaf(t) == NULL);
	CHECK_INT(t_all_Leaf_v(t_all_All_leaf(t)), 3); /* NULL-safe */
	CHECK(t_all_All_ints(t) == NULL);
	CHECK_UINT(t_all_All_ints_len(t), 0);
	CHECK_UINT(t_all_All_items_len(t), 0);
	CHECK(t_all_All_items_at(t, 0) == NULL);
	CHECK_INT(t_all_All_any_type(t), t_all_Any_NONE);
	CHECK(t_all_All_any(t) == NULL);
	CHECK(isinf(t_all_All_inf_d(t)) && t_all_All_inf_d(t) > 0);
	CHECK(isnan(t_all_All_nan_f(t)));
	CHECK(isinf(t_all_All_ninf_f(t)) && t_all_All_ninf_f(t) < 0);
	CHECK_INT(t_all_All_min_i64(t), INT64_MIN);
	CHECK(t_all_Color_name(42) == NULL);
	CHECK(!t_all_Color_is_known(42));
	free(buf);
}

static void advanced(const char *path)
{
	size_t len;
	unsigned char *buf = tlcm_test_read_file(path, &len);
	const char *why;
	CHECK_INT(t_adv_Root_verify_as_root(buf, len, &why), 0);
	t_adv_Root_table_t r = t_adv_Root_as_root(buf);
	CHECK_UINT(t_adv_Root_us_len(r), 3);
	CHECK_UINT(t_adv_Root_us_type_len(r), 3);
	CHECK_INT(t_adv_Root_us_type_at(r, 0), t_adv_U_A);
	CHECK_INT(t_adv_Root_us_type_at(r, 1), t_adv_U_B);
	CHECK_INT(t_adv_A_v((t_adv_A_table_t)t_adv_Root_us_at(r, 0)), 1);
	CHECK_STR(t_adv_B_s((t_adv_B_table_t)t_adv_Root_us_at(r, 1)), "bee");
	CHECK_INT(t_adv_A_v((t_adv_A_table_t)t_adv_Root_us_at(r, 2)), -3);
	CHECK_INT(t_adv_Root_v_type(r), t_adv_V_pt);
	const t_adv_Pt_t *pt = t_adv_Root_v_as_pt(r);
	CHECK(pt && pt->x == 7 && pt->y == -8);
	CHECK(t_adv_Root_v_as_txt(r) == NULL);
	CHECK_INT(t_adv_Root_w_type(r), t_adv_V_txt);
	CHECK_STR(t_adv_Root_w_as_txt(r), "union string");
	t_adv_Explicit_table_t x = t_adv_Root_x(r);
	CHECK_INT(t_adv_Explicit_a(x), 1);
	CHECK_STR(t_adv_Explicit_b(x), "bb");
	CHECK_INT(t_adv_Explicit_c(x), 3);
	/* explicit ids: c is id 3, so its vtable slot is 4 + 2 * 3 */
	CHECK(tlcm_fb_field(x, 10) != NULL);
	CHECK(tlcm_fb_field(x, 8) == NULL); /* deprecated id 2 */
	CHECK_STR(t_adv_Root_req(r), "required!");
	CHECK(walk_adv(r) != 0);
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s full.bin empty.bin advanced.bin\n",
			argv[0]);
		return 2;
	}
	full(argv[1]);
	empty(argv[2]);
	advanced(argv[3]);
	return tlcm_test_done();
}
