/* walk.h — read every field of the test schemas' tables, recursively.
 *
 * Used after a buffer passed verification: if the verifier accepted
 * something a reader would read out of bounds, ASan reports it here. The
 * checksum keeps the compiler from dropping the reads.
 */
#ifndef TLCM_TEST_FB_WALK_H
#define TLCM_TEST_FB_WALK_H

#include <string.h>

#include "fb/advanced_fb.h"
#include "fb/alltypes_fb.h"

static inline uint64_t walk_mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ull;
}

static inline uint64_t walk_dbl(uint64_t h, double d)
{
	uint64_t v;
	memcpy(&v, &d, sizeof v);
	return walk_mix(h, v);
}

static inline uint64_t walk_str(uint64_t h, const char *s)
{
	return s ? walk_mix(h, strlen(s)) : h;
}

static inline uint64_t walk_mem(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; c && i < n; i++)
		h = walk_mix(h, c[i]);
	return h;
}

static inline uint64_t walk_leaf(t_all_Leaf_table_t l)
{
	return walk_mix(walk_str(1, t_all_Leaf_name(l)), (uint64_t)t_all_Leaf_v(l));
}

static inline uint64_t walk_item(t_all_Item_table_t it)
{
	uint64_t h = walk_mix(2, t_all_Item_id(it));
	h = walk_str(h, t_all_Item_label(it));
	return walk_mix(h, walk_leaf(t_all_Item_leaf(it)));
}

static inline uint64_t walk_all(t_all_All_table_t t)
{
	uint64_t h = 3;
	if (!t)
		return h;
	h = walk_mix(h, t_all_All_b(t));
	h = walk_mix(h, (uint64_t)t_all_All_i8(t));
	h = walk_mix(h, t_all_All_u8(t));
	h = walk_mix(h, (uint64_t)t_all_All_i16(t));
	h = walk_mix(h, t_all_All_u16(t));
	h = walk_mix(h, (uint64_t)t_all_All_i32(t));
	h = walk_mix(h, t_all_All_u32(t));
	h = walk_mix(h, (uint64_t)t_all_All_i64(t));
	h = walk_mix(h, t_all_All_u64(t));
	h = walk_dbl(h, t_all_All_f32(t));
	h = walk_dbl(h, t_all_All_f64(t));
	h = walk_mix(h, (uint64_t)t_all_All_color(t));
	h = walk_mix(h, t_all_All_flags(t));
	h = walk_mix(h, (uint64_t)t_all_All_opt_i(t));
	h = walk_dbl(h, t_all_All_opt_f(t));
	h = walk_mix(h, t_all_All_opt_b(t));
	h = walk_str(h, t_all_All_name(t));
	h = walk_mix(h, t_all_All_name_len(t));
	const t_geom_Vec3_t *pos = t_all_All_pos(t);
	h = walk_mem(h, pos, pos ? sizeof *pos : 0);
	const t_geom_Pose_t *pose = t_all_All_pose(t);
	h = walk_mem(h, pose, pose ? sizeof *pose : 0);
	const t_geom_Arr_t *arr = t_all_All_arr(t);
	h = walk_mem(h, arr, arr ? sizeof *arr : 0);
	const t_geom_Wide_t *wide = t_all_All_wide(t);
	h = walk_mem(h, wide, wide ? sizeof *wide : 0);
	h = walk_mix(h, walk_leaf(t_all_All_leaf(t)));
	h = walk_mem(h, t_all_All_ints(t), 4 * t_all_All_ints_len(t));
	h = walk_mem(h, t_all_All_bytes(t), t_all_All_bytes_len(t));
	for (size_t i = 0; i < t_all_All_bools_len(t); i++)
		h = walk_mix(h, t_all_All_bools_at(t, i));
	for (size_t i = 0; i < t_all_All_doubles_len(t); i++)
		h = walk_dbl(h, t_all_All_doubles_at(t, i));
	for (size_t i = 0; i < t_all_All_longs_len(t); i++)
		h = walk_mix(h, t_all_All_longs_at(t, i));
	h = walk_mem(h, t_all_All_colors(t), t_all_All_colors_len(t));
	h = walk_mem(h, t_all_All_axes(t), t_all_All_axes_len(t));
	for (size_t i = 0; i < t_all_All_vecs_len(t); i++)
		h = walk_mem(h, t_all_All_vecs_at(t, i), sizeof(t_geom_Vec3_t));
	for (size_t i = 0; i < t_all_All_strs_len(t); i++)
		h = walk_str(h, t_all_All_strs_at(t, i));
	for (size_t i = 0; i < t_all_All_items_len(t); i++)
		h = walk_mix(h, walk_item(t_all_All_items_at(t, i)));
	h = walk_mix(h, t_all_All_any_type(t));
	h = walk_mix(h, walk_leaf(t_all_All_any_as_Leaf(t)));
	h = walk_mix(h, walk_item(t_all_All_any_as_Item(t)));
	h = walk_str(h, t_all_Other_s(t_all_All_any_as_other(t)));
	h = walk_mix(h, walk_all(t_all_All_nested(t)));
	for (size_t i = 0; i < t_all_All_children_len(t); i++)
		h = walk_mix(h, walk_all(t_all_All_children_at(t, i)));
	h = walk_dbl(h, t_all_All_inf_d(t));
	h = walk_mix(h, (uint64_t)t_all_All_min_i64(t));
	return h;
}

static inline uint64_t walk_adv(t_adv_Root_table_t r)
{
	uint64_t h = 5;
	for (size_t i = 0; i < t_adv_Root_us_len(r); i++) {
		uint8_t ty = t_adv_Root_us_type_at(r, i);
		const void *u = t_adv_Root_us_at(r, i);
		if (ty == t_adv_U_A)
			h = walk_mix(h, (uint64_t)t_adv_A_v((t_adv_A_table_t)u));
		else if (ty == t_adv_U_B)
			h = walk_str(h, t_adv_B_s((t_adv_B_table_t)u));
	}
	const t_adv_Pt_t *pt = t_adv_Root_v_as_pt(r);
	h = walk_mem(h, pt, pt ? sizeof *pt : 0);
	h = walk_mix(h, (uint64_t)t_adv_A_v(t_adv_Root_v_as_A(r)));
	h = walk_str(h, t_adv_Root_v_as_txt(r));
	h = walk_str(h, t_adv_Root_w_as_txt(r));
	pt = t_adv_Root_w_as_pt(r);
	h = walk_mem(h, pt, pt ? sizeof *pt : 0);
	t_adv_Explicit_table_t x = t_adv_Root_x(r);
	h = walk_mix(h, (uint64_t)t_adv_Explicit_a(x));
	h = walk_str(h, t_adv_Explicit_b(x));
	h = walk_mix(h, (uint64_t)t_adv_Explicit_c(x));
	return walk_str(h, t_adv_Root_req(r));
}

#endif
