/* test_drift.c — the drift tests of nodes/drift/detectors.c, without a
 * graph.
 *
 * River's documented results on river's documented stream
 * (tests/drift/river_stream.txt, made by gen_river_stream.py): with the
 * defaults PageHinkley detects at index 1006 and ADWIN at 1023, exactly;
 * KSWIN within 30 samples of the change at 1000. Then: Page-Hinkley
 * modes, ADWIN quiet on long stationary streams, the KS test against
 * closed forms and brute-force enumeration, the Kolmogorov distribution,
 * EWMA limits, CUSUM, Welford and Jensen-Shannon known values.
 */
#include "engine/error.h"
#include "nodes/drift/detectors.h"
#include "tests/tlcm_test.h"

#define NEAR(a, b, tol)                                                     \
	do {                                                                \
		double a_ = (a), b_ = (b);                                  \
		tlcm_test_checks++;                                         \
		if (!(fabs(a_ - b_) <= (tol)))                              \
			TLCM__FAIL("%s ~ %s: %.17g != %.17g (tol %g)", #a,  \
				   #b, a_, b_, (double)(tol));              \
	} while (0)

static double stream[2000];
static int nstream;

static void load_stream(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		TLCM__FAIL("cannot open %s", path);
		exit(1);
	}
	while (nstream < 2000 && fscanf(f, "%lf", &stream[nstream]) == 1)
		nstream++;
	fclose(f);
	CHECK_INT(nstream, 2000);
	/* river's docstrings print these values at the detections */
	CHECK_DBL(stream[1006], 5);
	CHECK_DBL(stream[1023], 4);
}

static void page_hinkley_river(void)
{
	tlcm_ph_t p;
	tlcm_ph_init(&p, 0.005, 50, 1 - 0.0001, 30, TLCM_DRIFT_BOTH);
	int hits[8], nhits = 0;
	for (int i = 0; i < nstream; i++)
		if (tlcm_ph_update(&p, stream[i]) && nhits < 8)
			hits[nhits++] = i;
	CHECK_INT(nhits, 1);
	CHECK_INT(hits[0], 1006);
}

static int first_ph(int mode, bool falling)
{
	tlcm_ph_t p;
	tlcm_ph_init(&p, 0.005, 50, 1 - 0.0001, 30, mode);
	for (int i = 0; i < nstream; i++)
		if (tlcm_ph_update(&p, falling ? 7 - stream[i] : stream[i]))
			return i;
	return -1;
}

static void page_hinkley_modes(void)
{
	CHECK_INT(first_ph(TLCM_DRIFT_UP, false), 1006);
	CHECK_INT(first_ph(TLCM_DRIFT_DOWN, false), -1);
	CHECK_INT(first_ph(TLCM_DRIFT_DOWN, true), 1006); /* mirrored */
	CHECK_INT(first_ph(TLCM_DRIFT_UP, true), -1);
	CHECK_INT(first_ph(TLCM_DRIFT_BOTH, true), 1006);

	/* frozen mean, capped statistic, sums restart */
	tlcm_ph_t p;
	tlcm_ph_init(&p, 0.0, 10, 1.0, 1, TLCM_DRIFT_UP);
	for (int i = 0; i < 100; i++)
		tlcm_ph_step(&p, 1.0, true);
	CHECK_DBL(p.mean, 1.0);
	CHECK_DBL(tlcm_ph_stat(&p), 0.0);
	for (int i = 0; i < 5; i++)
		tlcm_ph_step(&p, 4.0, false); /* 5 * 3 above a frozen mean */
	CHECK_DBL(p.mean, 1.0);
	CHECK_DBL(tlcm_ph_stat(&p), 15.0);
	CHECK(p.drift);
	tlcm_ph_cap(&p, 10);
	CHECK_DBL(tlcm_ph_stat(&p), 10.0);
	tlcm_ph_step(&p, 0.0, false);
	CHECK_DBL(tlcm_ph_stat(&p), 9.0);
	tlcm_ph_reset_sums(&p);
	CHECK_DBL(tlcm_ph_stat(&p), 0.0);
	CHECK_DBL(p.mean, 1.0);
}

static void adwin_river(void)
{
	tlcm_adwin_t a;
	CHECK_INT(tlcm_adwin_init(&a, 0.002, 32, 5, 5, 10), 0);
	int hits[8], nhits = 0;
	for (int i = 0; i < nstream; i++) {
		if (!tlcm_adwin_update(&a, stream[i]) || nhits == 8)
			continue;
		hits[nhits++] = i;
		if (nhits > 1)
			continue;
		/* the cuts dropped the old concept down to its last bucket:
		 * 24 new samples and 8 old ones remain */
		CHECK_DBL(a.width, 32);
		CHECK(tlcm_adwin_mean(&a) > 4.0);
		CHECK(a.cut_diff > a.cut_eps);
	}
	CHECK_INT(nhits, 1);
	CHECK_INT(hits[0], 1023);

	/* river >= 0.15 resets ADWIN on the sample after a detection: the
	 * same single detection */
	tlcm_adwin_reset(&a);
	nhits = 0;
	bool prev = false;
	for (int i = 0; i < nstream; i++) {
		if (prev)
			tlcm_adwin_reset(&a);
		prev = tlcm_adwin_update(&a, stream[i]);
		if (prev && nhits < 8)
			hits[nhits++] = i;
	}
	CHECK_INT(nhits, 1);
	CHECK_INT(hits[0], 1023);
	tlcm_adwin_fini(&a);

	CHECK_INT(tlcm_adwin_init(&a, 0.002, 0, 5, 5, 10), TLCM_EINVAL);
	CHECK_INT(tlcm_adwin_init(&a, 2, 32, 5, 5, 10), TLCM_EINVAL);
}

static double uniform(uint64_t *s)
{
	return (double)(tlcm_drift_rand(s) >> 11) * 0x1p-53;
}

static void adwin_stationary(void)
{
	tlcm_adwin_t a;
	CHECK_INT(tlcm_adwin_init(&a, 0.002, 32, 5, 5, 10), 0);
	for (uint64_t seed = 1; seed <= 3; seed++) {
		uint64_t s = seed;
		int det = 0;
		tlcm_adwin_reset(&a);
		for (int i = 0; i < 200000; i++)
			det += tlcm_adwin_update(&a, uniform(&s) < 0.3);
		CHECK_INT(det, 0);
		CHECK_DBL(a.width, 200000); /* nothing was cut */
		NEAR(tlcm_adwin_mean(&a), 0.3, 0.01);
		CHECK(a.nrows <= 17); /* log-sized summary */
	}
	/* clock 1: the cut test on every sample, still quiet */
	tlcm_adwin_fini(&a);
	CHECK_INT(tlcm_adwin_init(&a, 0.002, 1, 5, 5, 10), 0);
	uint64_t s = 7;
	int det = 0;
	for (int i = 0; i < 20000; i++)
		det += tlcm_adwin_update(&a, uniform(&s));
	CHECK_INT(det, 0);
	tlcm_adwin_fini(&a);
}

static void kswin_river(void)
{
	/* river's defaults with our seed 1: no alarm before the change, the
	 * first one within 30 samples after it */
	tlcm_kswin_t k;
	CHECK_INT(tlcm_kswin_init(&k, 0.005, 100, 30, 1), 0);
	int first = -1, early = 0;
	for (int i = 0; i < nstream; i++)
		if (tlcm_kswin_update(&k, stream[i])) {
			if (i < 1000)
				early++;
			else if (first < 0)
				first = i;
		}
	CHECK_INT(early, 0);
	CHECK(first >= 1000 && first <= 1030);
	fprintf(stderr, "kswin seed 1: first detection at %d\n", first);
	tlcm_kswin_fini(&k);

	/* every seed finds the change within 30 samples; false alarms in the
	 * 1000 stationary samples happen at alpha = 0.005 (river's default)
	 * and are only counted */
	int late = 0, runs_with_alarm = 0;
	for (uint64_t seed = 1; seed <= 200; seed++) {
		CHECK_INT(tlcm_kswin_init(&k, 0.005, 100, 30, seed), 0);
		first = -1;
		early = 0;
		for (int i = 0; i < nstream && first < 0; i++)
			if (tlcm_kswin_update(&k, stream[i])) {
				if (i < 1000)
					early = 1;
				else
					first = i;
			}
		late += !(first >= 1000 && first <= 1030);
		runs_with_alarm += early;
		tlcm_kswin_fini(&k);
	}
	CHECK_INT(late, 0);
	fprintf(stderr, "kswin: %d of 200 seeds raised a false alarm before "
		"the change\n", runs_with_alarm);

	/* keep_ref + freeze: a detection keeps the reference, frozen data
	 * stay the pre-change sample */
	CHECK_INT(tlcm_kswin_init(&k, 0.005, 100, 30, 3), 0);
	k.keep_ref = true;
	int i = 0;
	while (i < nstream && !tlcm_kswin_update(&k, stream[i]))
		i++;
	CHECK(i >= 1000 && i <= 1030);
	CHECK_UINT(k.nref, 70);
	k.freeze = true;
	for (int j = 0; j < 200; j++)
		tlcm_kswin_update(&k, 6.0);
	double maxref = 0;
	for (uint32_t j = 0; j < k.nref; j++)
		if (tlcm_kswin_ref_at(&k, j) > maxref)
			maxref = tlcm_kswin_ref_at(&k, j);
	CHECK(maxref <= 7.0);
	CHECK(k.drift); /* still different from the frozen reference */
	tlcm_kswin_fini(&k);

	CHECK_INT(tlcm_kswin_init(&k, 0.005, 100, 60, 1), TLCM_EINVAL);
	CHECK_INT(tlcm_kswin_init(&k, 0, 100, 30, 1), TLCM_EINVAL);
}

/* D of one arrangement: lab[i] = 1 for a sample of the first set. */
static void ks_bruteforce(int n, int m)
{
	int total = n + m, count = 0, hist[64] = {0};
	int g = n, t = m;
	while (t) {
		int r = g % t;
		g = t;
		t = r;
	}
	int A = m / g, B = n / g;
	for (unsigned mask = 0; mask < (1u << total); mask++) {
		if (__builtin_popcount(mask) != n)
			continue;
		count++;
		int i = 0, j = 0, h = 0;
		for (int p = 0; p < total; p++) {
			if (mask >> p & 1)
				i++;
			else
				j++;
			int d = abs(i * A - j * B);
			if (d > h)
				h = d;
		}
		hist[h]++;
	}
	int ge = 0;
	for (int h = 63; h >= 1; h--) {
		ge += hist[h];
		if (hist[h])
			NEAR(tlcm_ks_exact_sf((size_t)n, (size_t)m, (uint64_t)h),
			     (double)ge / count, 1e-12);
	}
}

static void ks_test(void)
{
	/* closed form for n = m (Gnedenko): values from Python's math.comb */
	NEAR(tlcm_ks_exact_sf(30, 30, 15), 0.0008995776840176796, 1e-15);
	NEAR(tlcm_ks_exact_sf(30, 30, 14), 0.0025300622362698384, 1e-15);
	NEAR(tlcm_ks_exact_sf(30, 30, 8), 0.23907300248018637, 1e-13);
	NEAR(tlcm_ks_exact_sf(5, 5, 5), 2.0 / 252.0, 1e-15);
	CHECK_DBL(tlcm_ks_exact_sf(5, 5, 0), 1.0);
	/* unequal sizes against enumeration of every arrangement */
	ks_bruteforce(4, 6);
	ks_bruteforce(3, 7);
	ks_bruteforce(6, 9);

	/* Kolmogorov's distribution: both series, and where they meet */
	NEAR(tlcm_kolmogorov_sf(1.0), 0.26999967167735456, 1e-12);
	NEAR(tlcm_kolmogorov_sf(1.36), 0.049485876755377876, 1e-12);
	NEAR(tlcm_kolmogorov_sf(0.5), 0.9639452436648751, 1e-12);
	NEAR(tlcm_kolmogorov_sf(1.18), 0.1234538094297657, 1e-12);
	NEAR(tlcm_kolmogorov_sf(1.1799999), tlcm_kolmogorov_sf(1.18), 1e-6);
	NEAR(tlcm_kolmogorov_sf(2.0), 0.0006709252557796953, 1e-14);
	CHECK_DBL(tlcm_kolmogorov_sf(0), 1.0);

	/* ties: D is taken between distinct values */
	double a[4] = {1, 0, 1, 0}, b[4] = {1, 1, 1, 1}, d;
	double p = tlcm_ks_2samp(a, 4, b, 4, &d);
	CHECK_DBL(d, 0.5);
	NEAR(p, tlcm_ks_exact_sf(4, 4, 2), 1e-15);
	double c[3] = {5, 6, 7}, e[2] = {1, 2};
	tlcm_ks_2samp(c, 3, e, 2, &d);
	CHECK_DBL(d, 1.0);
	/* large samples take the asymptotic branch */
	static double x[600], y[600];
	uint64_t s = 11;
	for (int i = 0; i < 600; i++) {
		x[i] = uniform(&s);
		y[i] = uniform(&s) + 0.1;
	}
	p = tlcm_ks_2samp(x, 600, y, 600, &d);
	double en = 300, l = (sqrt(en) + 0.12 + 0.11 / sqrt(en)) * d;
	CHECK_DBL(p, tlcm_kolmogorov_sf(l));
	CHECK(d > 0.05 && d < 0.2);
	CHECK(p < 0.01);
}

static void ewma_test(void)
{
	tlcm_ewma_t e;
	tlcm_ewma_init(&e, 0.2, 3, 0, 1, TLCM_DRIFT_BOTH);
	CHECK_INT(tlcm_ewma_update(&e, 0.5), 0);
	NEAR(e.z, 0.1, 1e-15);
	NEAR(e.limit, 0.6, 1e-15); /* 3 sqrt(0.2/1.8 (1 - 0.8^2)) */
	CHECK_INT(tlcm_ewma_update(&e, 4), 1); /* z 0.88 > 0.768... */
	NEAR(e.z, 0.88, 1e-15);
	NEAR(e.limit, 3 * sqrt(0.2 / 1.8 * (1 - pow(0.8, 4))), 1e-15);
	NEAR(tlcm_ewma_score(&e), 0.88 / e.limit, 1e-15);
	tlcm_ewma_restart(&e);
	for (int i = 0; i < 200; i++)
		tlcm_ewma_update(&e, 0);
	NEAR(e.limit, 1.0, 1e-12); /* steady state: 3 sqrt(0.2/1.8) */
	CHECK_INT(tlcm_ewma_update(&e, -6), -1); /* z = -1.2 */
	e.mode = TLCM_DRIFT_UP;
	tlcm_ewma_restart(&e);
	for (int i = 0; i < 200; i++)
		CHECK_INT(tlcm_ewma_update(&e, -6), 0); /* falls ignored */
	CHECK_DBL(tlcm_ewma_score(&e), 0.0);
}

static void cusum_welford_jsd(void)
{
	tlcm_cusum_t c = {.k = 0.5, .mode = TLCM_DRIFT_UP};
	CHECK_DBL(tlcm_cusum_update(&c, 3, 1, 1), 1.5);
	CHECK_DBL(tlcm_cusum_update(&c, 3, 1, 1), 3.0);
	CHECK_DBL(tlcm_cusum_update(&c, -9, 1, 1), 0.0);
	CHECK_DBL(tlcm_cusum_update(&c, 2, 0, 2), 0.5);
	tlcm_cusum_update(&c, 100, 0, 1);
	tlcm_cusum_cap(&c, 10);
	CHECK_DBL(tlcm_cusum_stat(&c), 10.0);
	c.mode = TLCM_DRIFT_DOWN;
	CHECK_DBL(tlcm_cusum_stat(&c), 0.0);

	tlcm_welford_t w = {0};
	double v[] = {2, 4, 4, 4, 5, 5, 7, 9};
	for (int i = 0; i < 8; i++)
		tlcm_welford_add(&w, v[i]);
	CHECK_DBL(w.mean, 5.0);
	CHECK_DBL(tlcm_welford_var(&w), 4.0); /* population variance */

	double p1[2] = {1, 0}, q1[2] = {0, 1}, h[2] = {0.5, 0.5};
	CHECK_DBL(tlcm_jsd(p1, q1, 2), 1.0);
	CHECK_DBL(tlcm_jsd(p1, p1, 2), 0.0);
	NEAR(tlcm_jsd(p1, h, 2), 0.31127812445913283, 1e-15);
	double p3[3] = {3, 1, 0}, q3[3] = {1, 1, 2};
	NEAR(tlcm_jsd(p3, q3, 3), 0.3443609377704336, 1e-15);
	NEAR(tlcm_jsd(q3, p3, 3), 0.3443609377704336, 1e-15); /* symmetric */
	double p4[4] = {10, 20, 30, 40}, q4[4] = {40, 30, 20, 10};
	NEAR(tlcm_jsd(p4, q4, 4), 0.15356065532898455, 1e-15);
	double s4[4] = {1, 2, 3, 4}; /* counts or shares: same */
	NEAR(tlcm_jsd(s4, q4, 4), 0.15356065532898455, 1e-15);
	double z[2] = {0, 0};
	CHECK_DBL(tlcm_jsd(z, h, 2), 0.0);

	CHECK_INT(tlcm_drift_mode_parse("up"), TLCM_DRIFT_UP);
	CHECK_INT(tlcm_drift_mode_parse("sideways"), 0);
	CHECK_STR(tlcm_drift_mode_name(TLCM_DRIFT_DOWN), "down");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_drift tests/drift/river_stream.txt\n");
		return 2;
	}
	load_stream(argv[1]);
	page_hinkley_river();
	page_hinkley_modes();
	adwin_river();
	adwin_stationary();
	kswin_river();
	ks_test();
	ewma_test();
	cusum_welford_jsd();
	return tlcm_test_done();
}
