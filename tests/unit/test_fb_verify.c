/* test_fb_verify.c — the verifier against a corpus of bad buffers.
 *
 * Valid buffers (made by flatc) are truncated at every length, flipped at
 * every bit and randomly corrupted; each result is verified from an
 * exactly-sized heap copy and, when accepted, read in full, so under ASan
 * any read the verifier should have prevented is reported. Hand-made
 * adversarial buffers must be rejected with a reason naming the problem.
 * usage: test_fb_verify alltypes_full.bin advanced.bin
 */
#include <stdalign.h>

#include "tests/tlcm_test.h"
#include "tests/fb/walk.h"

typedef struct {
	unsigned accepted, rejected;
} tally_t;

/* Verify a heap copy of exactly len bytes; walk it when accepted. */
static int try_all(const unsigned char *src, size_t len, tally_t *t,
		   const char **why)
{
	unsigned char *c = malloc(len ? len : 1);
	memcpy(c, src, len);
	const char *w;
	int rc = t_all_All_verify_as_root(c, len, &w);
	if (rc == 0) {
		(void)walk_all(t_all_All_as_root(c));
		t->accepted++;
	} else {
		CHECK_INT(rc, TLCM_EBADMSG);
		CHECK(w != NULL && w[0] != 0);
		t->rejected++;
	}
	if (why)
		*why = w;
	free(c);
	return rc;
}

static int try_adv(const unsigned char *src, size_t len, tally_t *t)
{
	unsigned char *c = malloc(len ? len : 1);
	memcpy(c, src, len);
	const char *w;
	int rc = t_adv_Root_verify_as_root(c, len, &w);
	if (rc == 0) {
		(void)walk_adv(t_adv_Root_as_root(c));
		t->accepted++;
	} else {
		t->rejected++;
	}
	free(c);
	return rc;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mutations(const unsigned char *buf, size_t len, bool adv)
{
	tally_t trunc = {0}, flip = {0}, rnd = {0};
	unsigned char *m = malloc(len);

	unsigned cut_data = 0;
	for (size_t n = 0; n < len; n++) {
		unsigned before = trunc.accepted;
		adv ? try_adv(buf, n, &trunc) : try_all(buf, n, &trunc, NULL);
		cut_data += n + 8 <= len && trunc.accepted > before;
	}
	/* the tail of a FlatBuffer is the first object built, after at most
	 * 7 bytes of alignment padding: cutting into it must be caught */
	CHECK_UINT(cut_data, 0);

	for (size_t bit = 0; bit < len * 8; bit++) {
		memcpy(m, buf, len);
		m[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		adv ? try_adv(m, len, &flip) : try_all(m, len, &flip, NULL);
	}
	CHECK(flip.rejected > 0);

	static const unsigned char nasty[] = {0x00, 0xff, 0x7f, 0x80, 0x01,
					      0xfe, 0x04, 0x08};
	for (int i = 0; i < 20000; i++) {
		memcpy(m, buf, len);
		int k = 1 + (int)(next() % 8);
		for (int j = 0; j < k; j++) {
			uint64_t r = next();
			m[r % len] = (r >> 40) & 1 ? nasty[(r >> 32) % 8]
						   : (unsigned char)(r >> 48);
		}
		adv ? try_adv(m, len, &rnd) : try_all(m, len, &rnd, NULL);
	}
	CHECK(rnd.rejected > 0);
	fprintf(stderr, "%s: %zu bytes; truncated %u/%u rejected; bit flips "
		"%u rejected, %u accepted; random %u rejected, %u accepted\n",
		adv ? "advanced" : "alltypes", len, trunc.rejected,
		trunc.rejected + trunc.accepted, flip.rejected, flip.accepted,
		rnd.rejected, rnd.accepted);
	free(m);
}

/* Expect rejection of a modified copy of buf with a reason containing
 * each of the given fragments. */
static void expect_bad(const unsigned char *m, size_t len, const char *a,
		       const char *b)
{
	tally_t t = {0};
	const char *why;
	CHECK(try_all(m, len, &t, &why) != 0);
	CHECK_CONTAINS(why, a);
	if (b)
		CHECK_CONTAINS(why, b);
}

static void put_u32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void handmade(const unsigned char *buf, size_t len)
{
	unsigned char *m = malloc(len);
	t_all_All_table_t t = t_all_All_as_root(buf);
	size_t root = tlcm_fb_load_u32(buf);
	size_t vt = root - (size_t)tlcm_fb_load_i32(buf + root);
#define RESET() memcpy(m, buf, len)
#define OFF(p) ((size_t)((const unsigned char *)(p) - buf))

	RESET();
	m[4] = 'X';
	expect_bad(m, len, "file identifier is \"XALL\"", "expected \"TALL\"");

	RESET();
	put_u32(m, (uint32_t)len + 100);
	expect_bad(m, len, "(root)", "points outside");

	RESET(); /* an offset that would wrap around to point backwards */
	put_u32(m, 0xFFFFFFFCu);
	expect_bad(m, len, "(root)", "points outside");

	RESET();
	put_u32(m, (uint32_t)root + 1);
	expect_bad(m, len, "t.all.All", "misaligned");

	RESET();
	put_u32(m + root, 0x7FFFFFF0u);
	expect_bad(m, len, "t.all.All", "vtable");

	RESET();
	m[vt] = 3; /* vtable size odd and below the header */
	m[vt + 1] = 0;
	expect_bad(m, len, "vtable", "bad size");

	RESET();
	m[vt + 2] = 0xff; /* table claims 65535 bytes */
	m[vt + 3] = 0xff;
	expect_bad(m, len, "t.all.All", "past the end");

	RESET(); /* field i32 (id 5) placed beyond the table's size */
	m[vt + 4 + 2 * 5] = 0xf0;
	m[vt + 4 + 2 * 5 + 1] = 0xff;
	expect_bad(m, len, "t.all.All.i32", "exceeds the table");

	RESET();
	put_u32(m + OFF(t_all_All_ints(t)) - 4, 0x7fffffff);
	expect_bad(m, len, "t.all.All.ints", "runs past");

	RESET();
	put_u32(m + OFF(t_all_All_ints(t)) - 4, 0x40000001); /* * 4 wraps 32 bit */
	expect_bad(m, len, "t.all.All.ints", "runs past");

	RESET();
	m[OFF(t_all_All_name(t)) + t_all_All_name_len(t)] = 'x';
	expect_bad(m, len, "t.all.All.name", "not zero-terminated");

	RESET();
	{
		const uint8_t *p = tlcm_fb_field(t, 4 + 2 * 32); /* any_type */
		CHECK(p != NULL);
		m[OFF(p)] = 99;
	}
	expect_bad(m, len, "t.all.All.any", "unknown union type 99");

	RESET();
	{
		t_all_Item_table_t it = t_all_All_items_at(t, 0);
		const char *l = t_all_Item_label(it);
		put_u32(m + OFF(l) - 4, (uint32_t)len);
	}
	expect_bad(m, len, "t.all.Item.label", NULL);

	tally_t tt = {0};
	const char *why;
	CHECK(try_all(buf, 7, &tt, &why) != 0);
	CHECK_CONTAINS(why, "too short");
	CHECK(t_all_All_verify_as_root(NULL, 100, &why) != 0);
	CHECK_CONTAINS(why, "NULL");
	CHECK(t_all_All_verify_as_root(buf, (size_t)3 << 30, &why) != 0);
	CHECK_CONTAINS(why, "2 GiB");

	/* an unaligned buffer address */
	unsigned char *un = malloc(len + 1);
	memcpy(un + 1, buf, len);
	CHECK(t_all_All_verify_as_root(un + 1, len, &why) != 0);
	CHECK_CONTAINS(why, "aligned");
	free(un);

	/* size prefix larger than the data */
	unsigned char *sp = malloc(len + 8);
	put_u32(sp, (uint32_t)len + 1);
	memcpy(sp + 8, buf, len);
	CHECK(t_all_All_verify_as_root_size_prefixed(sp, len + 4, &why) != 0);
	CHECK_CONTAINS(why, "size prefix");
	free(sp);
	free(m);
#undef RESET
#undef OFF
}

static void built_attacks(void)
{
	tlcm_fbb_t b;
	size_t len;
	const void *buf;
	const char *why;

	/* required field missing, bypassing the generated T_end() check */
	tlcm_fbb_init(&b, 0);
	t_all_Item_start(&b);
	t_all_Item_add_id(&b, 1);
	buf = tlcm_fbb_finish(&b, tlcm_fbb_table_end(&b), NULL, &len);
	CHECK(buf != NULL);
	CHECK(t_all_Item_verify_as_root(buf, len, &why) != 0);
	CHECK_CONTAINS(why, "t.all.Item.label: required field is missing");

	/* union type without a value */
	tlcm_fbb_reset(&b);
	t_all_All_start(&b);
	uint8_t ty = t_all_Any_Leaf;
	tlcm_fbb_add_scalar(&b, 32, &ty, 1, 1);
	buf = t_all_All_finish(&b, t_all_All_end(&b), &len);
	CHECK(t_all_All_verify_as_root(buf, len, &why) != 0);
	CHECK_CONTAINS(why, "t.all.All.any: union type 1 set but value missing");

	/* nesting beyond the limit */
	tlcm_fbb_reset(&b);
	t_all_All_start(&b);
	tlcm_fbb_ref_t r = t_all_All_end(&b);
	for (int i = 0; i < 100; i++) {
		t_all_All_start(&b);
		t_all_All_add_nested(&b, r);
		r = t_all_All_end(&b);
	}
	buf = t_all_All_finish(&b, r, &len);
	CHECK(t_all_All_verify_as_root(buf, len, &why) != 0);
	CHECK_CONTAINS(why, "nesting deeper than 64");

	/* a small buffer that shares sub-tables to look like 16^6 tables */
	tlcm_fbb_reset(&b);
	t_all_All_start(&b);
	r = t_all_All_end(&b);
	for (int level = 0; level < 6; level++) {
		tlcm_fbb_ref_t kids[16];
		for (int i = 0; i < 16; i++)
			kids[i] = r;
		tlcm_fbb_ref_t v = t_all_All_children_create(&b, kids, 16);
		t_all_All_start(&b);
		t_all_All_add_children(&b, v);
		r = t_all_All_end(&b);
	}
	buf = t_all_All_finish(&b, r, &len);
	CHECK(len < 2000);
	CHECK(t_all_All_verify_as_root(buf, len, &why) != 0);
	CHECK_CONTAINS(why, "more than 1000000 tables");

	/* union vector: two types, one value */
	tlcm_fbb_reset(&b);
	t_adv_A_start(&b);
	tlcm_fbb_ref_t a = t_adv_A_end(&b);
	t_adv_U_union_type_t types[2] = {t_adv_U_A, t_adv_U_A};
	tlcm_fbb_ref_t tv = t_adv_Root_us_type_create(&b, types, 2);
	tlcm_fbb_ref_t vv = t_adv_Root_us_create(&b, &a, 1);
	tlcm_fbb_ref_t req = tlcm_fbb_cstring(&b, "r");
	t_adv_Root_start(&b);
	t_adv_Root_add_us(&b, tv, vv);
	t_adv_Root_add_req(&b, req);
	buf = t_adv_Root_finish(&b, t_adv_Root_end(&b), &len);
	CHECK(t_adv_Root_verify_as_root(buf, len, &why) != 0);
	CHECK_CONTAINS(why, "t.adv.Root.us: 2 types for 1 values");

	/* an out-of-line struct union member past the end */
	tlcm_fbb_reset(&b);
	t_adv_Pt_t pt = {1, 2};
	tlcm_fbb_ref_t pr = tlcm_fbb_struct(&b, &pt, sizeof pt, 4);
	req = tlcm_fbb_cstring(&b, "r");
	t_adv_Root_start(&b);
	t_adv_Root_add_v(&b, t_adv_V_pt, pr);
	t_adv_Root_add_req(&b, req);
	buf = t_adv_Root_finish(&b, t_adv_Root_end(&b), &len);
	CHECK_INT(t_adv_Root_verify_as_root(buf, len, &why), 0);
	CHECK(t_adv_Root_verify_as_root(buf, len - 4, &why) != 0);
	tlcm_fbb_fini(&b);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s alltypes_full.bin advanced.bin\n",
			argv[0]);
		return 2;
	}
	size_t len, alen;
	unsigned char *buf = tlcm_test_read_file(argv[1], &len);
	unsigned char *adv = tlcm_test_read_file(argv[2], &alen);
	tally_t t = {0};
	CHECK_INT(try_all(buf, len, &t, NULL), 0);
	CHECK_INT(try_adv(adv, alen, &t), 0);
	handmade(buf, len);
	built_attacks();
	mutations(buf, len, false);
	mutations(adv, alen, true);
	free(buf);
	free(adv);
	return tlcm_test_done();
}
