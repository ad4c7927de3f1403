/* detectors.h — the drift tests behind nodes/drift/, as plain C.
 *
 * No engine, no messages, no allocation except ADWIN's bucket rows and
 * KSWIN's windows (made by their _init, freed by _fini): each test is a
 * struct of parameters and state plus an update function, so unit tests
 * and benchmarks call them directly. The nodes add warm-up, cooldown,
 * hysteresis and persistence around them (drift_common.h).
 *
 *   Page-Hinkley  river.drift.PageHinkley (fading sums, two-sided)
 *   ADWIN         river.drift.ADWIN (ADWIN2 exponential histogram)
 *   KSWIN         river.drift.KSWIN with a two-sample KS test of our own
 *                 (exact for small samples, asymptotic Kolmogorov beyond)
 *   EWMA          control chart with time-varying limits (Roberts 1959)
 *   CUSUM         one-sided tabular CUSUM on standardised values (the
 *                 prototype's "Page-Hinkley against a reference mean")
 *   JSD           Jensen-Shannon divergence of two histograms, base 2
 *
 * Page-Hinkley and ADWIN reproduce river's documented detections exactly
 * (tests/unit/test_drift.c, stream in tests/drift/).
 */
#ifndef TLCM_DRIFT_DETECTORS_H
#define TLCM_DRIFT_DETECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which direction of change a test watches. */
enum { TLCM_DRIFT_UP = 1, TLCM_DRIFT_DOWN = 2, TLCM_DRIFT_BOTH = 3 };

/* Parse "up" / "down" / "both"; 0 when unknown. */
int tlcm_drift_mode_parse(const char *s);
const char *tlcm_drift_mode_name(int mode);

/* ---- Page-Hinkley ------------------------------------------------------
 * Per sample: mean += (x - mean) / n; s_up = alpha*s_up + (x-mean) - delta;
 * s_down = alpha*s_down + (x-mean) + delta; track min(s_up), max(s_down);
 * once n >= min_instances: up = s_up - min, down = max - s_down, drift
 * when the watched one exceeds threshold. river resets the test on the
 * sample after a detection; tlcm_ph_update does the same. */
typedef struct tlcm_ph {
	double delta, threshold, alpha;
	uint64_t min_instances;
	int mode;
	/* state */
	uint64_t n;
	double mean, sum_up, sum_down, min_up, max_down;
	bool drift;
} tlcm_ph_t;

void tlcm_ph_init(tlcm_ph_t *p, double delta, double threshold, double alpha,
		  uint64_t min_instances, int mode);
/* Forget everything learned (parameters stay). */
void tlcm_ph_reset(tlcm_ph_t *p);
/* river's update: reset if the previous sample detected, then step. */
bool tlcm_ph_update(tlcm_ph_t *p, double x);
/* One step without the automatic reset. learn = false keeps the mean (the
 * reference) frozen and only moves the sums. Returns drift. */
bool tlcm_ph_step(tlcm_ph_t *p, double x, bool learn);
/* The watched statistic (max of up/down for "both"); 0 before any sample. */
double tlcm_ph_stat(const tlcm_ph_t *p);
/* Clamp the watched statistic(s) to at most cap (keeps the time to fall
 * back below an exit level bounded while a drift lasts). */
void tlcm_ph_cap(tlcm_ph_t *p, double cap);
/* Restart the sums (not the mean). */
void tlcm_ph_reset_sums(tlcm_ph_t *p);

/* ---- ADWIN --------------------------------------------------------------
 * The window is kept as rows of buckets; row i holds up to max_buckets
 * buckets of 2^i samples (total and variance each), oldest first; a row
 * that overflows merges its two oldest into one bucket of the next row.
 * Every `clock` samples (once width > grace_period) every cut between
 * buckets is tested, oldest first: |mean0 - mean1| > eps_cut with
 * eps = sqrt(2 m v d') + 2/3 d' m, m = 1/(n0-mwl+1) + 1/(n1-mwl+1),
 * v = window variance, d' = ln(2 ln(width) / delta). A significant cut
 * drops the oldest bucket and the scan starts over. */
#define TLCM_ADWIN_MAX_ROWS 64

typedef struct tlcm_adwin {
	double delta;
	uint32_t clock, max_buckets, min_window_length, grace_period;
	/* state */
	double width, total, variance;
	uint64_t tick, detections;
	uint32_t nrows;
	uint32_t *count;        /* [TLCM_ADWIN_MAX_ROWS] buckets per row */
	double *tot, *var;      /* [rows][max_buckets + 1] */
	/* the last significant cut: |mean0 - mean1| and eps_cut */
	double cut_diff, cut_eps;
} tlcm_adwin_t;

int tlcm_adwin_init(tlcm_adwin_t *a, double delta, uint32_t clock,
		    uint32_t max_buckets, uint32_t min_window_length,
		    uint32_t grace_period);
void tlcm_adwin_fini(tlcm_adwin_t *a);
/* Empty the window (parameters and buffers stay). */
void tlcm_adwin_reset(tlcm_adwin_t *a);
/* Add x; true when the window was cut (a change). */
bool tlcm_adwin_update(tlcm_adwin_t *a, double x);
static inline double tlcm_adwin_mean(const tlcm_adwin_t *a)
{
	return a->width > 0 ? a->total / a->width : 0.0;
}

/* ---- KSWIN --------------------------------------------------------------
 * The last window_size samples, split into the reference (the older
 * window_size - stat_size) and the recent stat_size. Once full, every
 * sample draws stat_size reference samples without replacement and runs
 * the two-sample KS test against the recent ones: drift when p <= alpha
 * and D > 0.1 (river's rule). After a detection the window keeps only the
 * recent samples (river's intent; its reset empties it a sample later)
 * unless keep_ref is set. With freeze set, samples leaving the recent part
 * are discarded instead of entering the reference, so the reference stays
 * the pre-drift data. Draws come from splitmix64, not Python's Mersenne
 * Twister, so detections match river's within a few samples, not exactly. */
typedef struct tlcm_kswin {
	double alpha;
	uint32_t window_size, stat_size;
	uint64_t rng;
	bool freeze;            /* leaving samples skip the reference */
	bool keep_ref;          /* a detection keeps the reference */
	/* state: two FIFOs, oldest at head */
	double *ref, *recent;   /* capacities window_size - stat_size, stat_size */
	uint32_t nref, ref_head, nrecent, recent_head;
	double *wa, *wb;        /* stat_size scratch each */
	double p_value, stat;
	bool drift;
} tlcm_kswin_t;

int tlcm_kswin_init(tlcm_kswin_t *k, double alpha, uint32_t window_size,
		    uint32_t stat_size, uint64_t seed);
void tlcm_kswin_fini(tlcm_kswin_t *k);
void tlcm_kswin_reset(tlcm_kswin_t *k);
bool tlcm_kswin_update(tlcm_kswin_t *k, double x);
/* Reference sample i (0 = oldest) and recent sample i. */
double tlcm_kswin_ref_at(const tlcm_kswin_t *k, uint32_t i);
double tlcm_kswin_recent_at(const tlcm_kswin_t *k, uint32_t i);
/* Append to either FIFO directly (restoring a snapshot). */
void tlcm_kswin_push_ref(tlcm_kswin_t *k, double x);
void tlcm_kswin_push_recent(tlcm_kswin_t *k, double x);

/* Two-sample Kolmogorov-Smirnov test, two-sided: D = max |F_a - F_b| (ties
 * handled), p = P(D >= d) under H0. Exact (lattice paths, as scipy's
 * method="exact") when n*m <= TLCM_KS_EXACT_MAX, else the asymptotic
 * Kolmogorov distribution with Stephens' small-sample correction. a and b
 * are sorted in place. */
#define TLCM_KS_EXACT_MAX 250000u
double tlcm_ks_2samp(double *a, size_t n, double *b, size_t m, double *d);
/* The pieces, for tests: exact P(D >= h / lcm(n, m)) and Q_KS(lambda). */
double tlcm_ks_exact_sf(size_t n, size_t m, uint64_t h);
double tlcm_kolmogorov_sf(double lambda);

/* ---- EWMA control chart --------------------------------------------------
 * z_t = lambda x_t + (1 - lambda) z_{t-1}, z_0 = mu0; limits
 * mu0 +- L sigma0 sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2t))). */
typedef struct tlcm_ewma {
	double lambda, L, mu0, sigma0;
	int mode;
	double z, limit; /* limit: half-width at the last update */
	uint64_t t;
} tlcm_ewma_t;

void tlcm_ewma_init(tlcm_ewma_t *e, double lambda, double L, double mu0,
		    double sigma0, int mode);
/* Restart the chart at mu0 (t = 0). */
void tlcm_ewma_restart(tlcm_ewma_t *e);
/* +1 above the upper limit, -1 below the lower one (each only when the
 * mode watches it), 0 inside. */
int tlcm_ewma_update(tlcm_ewma_t *e, double x);
/* How far outside, in limits: |z - mu0| / limit (>1 means outside). */
double tlcm_ewma_score(const tlcm_ewma_t *e);

/* ---- CUSUM against a reference -------------------------------------------
 * s = max(0, s + dir (x - mean) / std - k) for dir = +1 (up) and -1 (down);
 * the statistic is the larger watched one. */
typedef struct tlcm_cusum {
	double k;
	int mode;
	double up, down;
} tlcm_cusum_t;

double tlcm_cusum_update(tlcm_cusum_t *c, double x, double mean, double std);
double tlcm_cusum_stat(const tlcm_cusum_t *c);
void tlcm_cusum_cap(tlcm_cusum_t *c, double cap);

/* ---- running mean and variance (Welford) -------------------------------- */
typedef struct tlcm_welford {
	uint64_t n;
	double mean, m2;
} tlcm_welford_t;

void tlcm_welford_add(tlcm_welford_t *w, double x);
/* Population variance (numpy's default), 0 for n < 2. */
double tlcm_welford_var(const tlcm_welford_t *w);

/* ---- Jensen-Shannon divergence ------------------------------------------
 * Of two count (or probability) vectors of k bins, each normalised by its
 * own total; base-2 logarithms, so the result lies in [0, 1]. 0 when
 * either total is 0. */
double tlcm_jsd(const double *p, const double *q, size_t k);

/* splitmix64: the detectors' random numbers (KSWIN's draws). */
uint64_t tlcm_drift_rand(uint64_t *state);

#endif
