/* detectors.c — Page-Hinkley, ADWIN, KSWIN (with its KS test), EWMA,
 * CUSUM, Welford and Jensen-Shannon; see detectors.h for the definitions.
 *
 * Page-Hinkley and ADWIN follow river's update order step by step (mean
 * before sums, detection flag after min_instances; ADWIN's insert,
 * compress, then the cut scan every `clock` samples) because the unit
 * tests require river's exact detection indices.
 */
#include "nodes/drift/detectors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"

int tlcm_drift_mode_parse(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "up"))
		return TLCM_DRIFT_UP;
	if (!strcmp(s, "down"))
		return TLCM_DRIFT_DOWN;
	if (!strcmp(s, "both"))
		return TLCM_DRIFT_BOTH;
	return 0;
}

const char *tlcm_drift_mode_name(int mode)
{
	return mode == TLCM_DRIFT_UP ? "up" : mode == TLCM_DRIFT_DOWN ? "down"
							       : "both";
}

uint64_t tlcm_drift_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- Page-Hinkley ------------------------------------------------------ */

void tlcm_ph_init(tlcm_ph_t *p, double delta, double threshold, double alpha,
		  uint64_t min_instances, int mode)
{
	memset(p, 0, sizeof *p);
	p->delta = delta;
	p->threshold = threshold;
	p->alpha = alpha;
	p->min_instances = min_instances;
	p->mode = mode ? mode : TLCM_DRIFT_BOTH;
	tlcm_ph_reset(p);
}

void tlcm_ph_reset_sums(tlcm_ph_t *p)
{
	p->sum_up = p->sum_down = 0.0;
	p->min_up = INFINITY;
	p->max_down = -1.0; /* river's initial value */
	p->drift = false;
}

void tlcm_ph_reset(tlcm_ph_t *p)
{
	p->n = 0;
	p->mean = 0.0;
	tlcm_ph_reset_sums(p);
}

static double ph_up(const tlcm_ph_t *p)
{
	return p->min_up == INFINITY ? 0.0 : p->sum_up - p->min_up;
}

static double ph_down(const tlcm_ph_t *p)
{
	double d = p->max_down - p->sum_down;
	return d > 0 ? d : 0.0; /* -1 before the first sample */
}

double tlcm_ph_stat(const tlcm_ph_t *p)
{
	double up = ph_up(p), down = ph_down(p);
	if (p->mode == TLCM_DRIFT_UP)
		return up;
	if (p->mode == TLCM_DRIFT_DOWN)
		return down;
	return up > down ? up : down;
}

bool tlcm_ph_step(tlcm_ph_t *p, double x, bool learn)
{
	if (learn) {
		p->n++;
		p->mean += (x - p->mean) / (double)p->n;
	}
	double dev = x - p->mean;
	p->sum_up = p->alpha * p->sum_up + dev - p->delta;
	p->sum_down = p->alpha * p->sum_down + dev + p->delta;
	if (p->sum_up < p->min_up)
		p->min_up = p->sum_up;
	if (p->sum_down > p->max_down)
		p->max_down = p->sum_down;
	if (p->n >= p->min_instances) {
		double up = p->sum_up - p->min_up;
		double down = p->max_down - p->sum_down;
		p->drift = ((p->mode & TLCM_DRIFT_UP) && up > p->threshold) ||
			   ((p->mode & TLCM_DRIFT_DOWN) && down > p->threshold);
	}
	return p->drift;
}

bool tlcm_ph_update(tlcm_ph_t *p, double x)
{
	if (p->drift)
		tlcm_ph_reset(p);
	return tlcm_ph_step(p, x, true);
}

void tlcm_ph_cap(tlcm_ph_t *p, double cap)
{
	if (ph_up(p) > cap)
		p->min_up = p->sum_up - cap;
	if (ph_down(p) > cap)
		p->max_down = p->sum_down + cap;
}

/* ---- ADWIN -------------------------------------------------------------- */

#define ROW(a, r) ((size_t)(r) * ((a)->max_buckets + 1))

int tlcm_adwin_init(tlcm_adwin_t *a, double delta, uint32_t clock,
		    uint32_t max_buckets, uint32_t min_window_length,
		    uint32_t grace_period)
{
	memset(a, 0, sizeof *a);
	if (clock == 0 || max_buckets < 2 || max_buckets > 1000 ||
	    !(delta > 0 && delta < 1))
		return TLCM_EINVAL;
	a->delta = delta;
	a->clock = clock;
	a->max_buckets = max_buckets;
	a->min_window_length = min_window_length;
	a->grace_period = grace_period;
	size_t cells = ROW(a, TLCM_ADWIN_MAX_ROWS);
	a->count = calloc(TLCM_ADWIN_MAX_ROWS, sizeof *a->count);
	a->tot = calloc(cells, sizeof *a->tot);
	a->var = calloc(cells, sizeof *a->var);
	if (!a->count || !a->tot || !a->var) {
		tlcm_adwin_fini(a);
		return TLCM_ENOMEM;
	}
	tlcm_adwin_reset(a);
	return 0;
}

void tlcm_adwin_fini(tlcm_adwin_t *a)
{
	free(a->count);
	free(a->tot);
	free(a->var);
	a->count = NULL;
	a->tot = a->var = NULL;
}

void tlcm_adwin_reset(tlcm_adwin_t *a)
{
	a->width = a->total = a->variance = 0.0;
	a->tick = a->detections = 0;
	a->cut_diff = a->cut_eps = 0.0;
	a->nrows = 1;
	memset(a->count, 0, TLCM_ADWIN_MAX_ROWS * sizeof *a->count);
}

/* Drop the n oldest buckets of row r. */
static void row_shift(tlcm_adwin_t *a, uint32_t r, uint32_t n)
{
	double *t = a->tot + ROW(a, r), *v = a->var + ROW(a, r);
	uint32_t left = a->count[r] - n;
	memmove(t, t + n, left * sizeof *t);
	memmove(v, v + n, left * sizeof *v);
	a->count[r] = left;
}

static void row_push(tlcm_adwin_t *a, uint32_t r, double total, double var)
{
	a->tot[ROW(a, r) + a->count[r]] = total;
	a->var[ROW(a, r) + a->count[r]] = var;
	a->count[r]++;
}

static void adwin_compress(tlcm_adwin_t *a)
{
	for (uint32_t r = 0; r < a->nrows; r++) {
		if (a->count[r] != a->max_buckets + 1)
			break;
		if (r + 1 == a->nrows) {
			if (a->nrows == TLCM_ADWIN_MAX_ROWS)
				break; /* 2^64 samples: unreachable */
			a->count[a->nrows++] = 0;
		}
		double n1 = ldexp(1.0, (int)r);
		const double *t = a->tot + ROW(a, r), *v = a->var + ROW(a, r);
		double mu1 = t[0] / n1, mu2 = t[1] / n1;
		double temp = n1 * 0.5 * (mu1 - mu2) * (mu1 - mu2);
		row_push(a, r + 1, t[0] + t[1], v[0] + v[1] + temp);
		row_shift(a, r, 2);
		if (a->count[r + 1] <= a->max_buckets)
			break;
	}
}

static void adwin_insert(tlcm_adwin_t *a, double x)
{
	if (a->nrows == 0)
		a->nrows = 1;
	row_push(a, 0, x, 0.0);
	a->width += 1.0;
	if (a->width > 1.0) {
		double d = x - a->total / (a->width - 1.0);
		a->variance += (a->width - 1.0) * d * d / a->width;
	}
	a->total += x;
	adwin_compress(a);
}

/* Remove the oldest bucket (in the last, largest row). */
static void adwin_delete_oldest(tlcm_adwin_t *a)
{
	uint32_t r = a->nrows - 1;
	double n = ldexp(1.0, (int)r);
	double u = a->tot[ROW(a, r)], v = a->var[ROW(a, r)];
	a->width -= n;
	a->total -= u;
	if (a->width > 0) {
		double mu = u / n, mw = a->total / a->width;
		a->variance -= v + n * a->width * (mu - mw) * (mu - mw) /
					   (n + a->width);
	} else {
		a->variance = 0.0;
	}
	row_shift(a, r, 1);
	if (a->count[r] == 0)
		a->nrows--;
}

static bool adwin_cut(tlcm_adwin_t *a, double n0, double n1, double diff)
{
	double mwl = a->min_window_length;
	double dprime = log(2.0 * log(a->width) / a->delta);
	double m = 1.0 / (n0 - mwl + 1.0) + 1.0 / (n1 - mwl + 1.0);
	double eps = sqrt(2.0 * m * (a->variance / a->width) * dprime) +
		     2.0 / 3.0 * dprime * m;
	if (fabs(diff) > eps) {
		a->cut_diff = fabs(diff);
		a->cut_eps = eps;
		return true;
	}
	return false;
}

bool tlcm_adwin_update(tlcm_adwin_t *a, double x)
{
	adwin_insert(a, x);
	bool change = false;
	a->tick++;
	if (a->tick % a->clock != 0 || !(a->width > a->grace_period))
		return false;
	for (bool again = true; again;) {
		again = false;
		double n0 = 0, n1 = a->width, u0 = 0, u1 = a->total;
		bool done = false;
		for (uint32_t r = a->nrows; r-- > 0 && !done;) {
			double size = ldexp(1.0, (int)r);
			for (uint32_t k = 0; k < a->count[r]; k++) {
				double t = a->tot[ROW(a, r) + k];
				n0 += size;
				n1 -= size;
				u0 += t;
				u1 -= t;
				if (r == 0 && k == a->count[0] - 1) {
					done = true;
					break;
				}
				if (n1 >= a->min_window_length &&
				    n0 >= a->min_window_length &&
				    adwin_cut(a, n0, n1, u0 / n0 - u1 / n1)) {
					again = change = true;
					if (a->width > 0)
						adwin_delete_oldest(a);
					done = true;
					break;
				}
			}
		}
	}
	if (change)
		a->detections++;
	return change;
}

/* ---- KSWIN -------------------------------------------------------------- */

int tlcm_kswin_init(tlcm_kswin_t *k, double alpha, uint32_t window_size,
		    uint32_t stat_size, uint64_t seed)
{
	memset(k, 0, sizeof *k);
	if (!(alpha > 0 && alpha < 1) || stat_size == 0 ||
	    stat_size * 2 > window_size)
		return TLCM_EINVAL; /* the reference must hold stat_size draws */
	k->alpha = alpha;
	k->window_size = window_size;
	k->stat_size = stat_size;
	k->rng = seed;
	k->ref = calloc(window_size - stat_size, sizeof *k->ref);
	k->recent = calloc(stat_size, sizeof *k->recent);
	k->wa = calloc(stat_size, sizeof *k->wa);
	k->wb = calloc(stat_size, sizeof *k->wb);
	if (!k->ref || !k->recent || !k->wa || !k->wb) {
		tlcm_kswin_fini(k);
		return TLCM_ENOMEM;
	}
	k->p_value = 1.0;
	return 0;
}

void tlcm_kswin_fini(tlcm_kswin_t *k)
{
	free(k->ref);
	free(k->recent);
	free(k->wa);
	free(k->wb);
	k->ref = k->recent = k->wa = k->wb = NULL;
}

void tlcm_kswin_reset(tlcm_kswin_t *k)
{
	k->nref = k->ref_head = k->nrecent = k->recent_head = 0;
	k->p_value = 1.0;
	k->stat = 0.0;
	k->drift = false;
}

double tlcm_kswin_ref_at(const tlcm_kswin_t *k, uint32_t i)
{
	uint32_t cap = k->window_size - k->stat_size;
	return k->ref[(k->ref_head + i) % cap];
}

double tlcm_kswin_recent_at(const tlcm_kswin_t *k, uint32_t i)
{
	return k->recent[(k->recent_head + i) % k->stat_size];
}

void tlcm_kswin_push_ref(tlcm_kswin_t *k, double x)
{
	uint32_t cap = k->window_size - k->stat_size;
	if (k->nref == cap) { /* drop the oldest */
		k->ref[k->ref_head] = x;
		k->ref_head = (k->ref_head + 1) % cap;
	} else {
		k->ref[(k->ref_head + k->nref++) % cap] = x;
	}
}

void tlcm_kswin_push_recent(tlcm_kswin_t *k, double x)
{
	if (k->nrecent == k->stat_size) {
		double out = k->recent[k->recent_head];
		k->recent[k->recent_head] = x;
		k->recent_head = (k->recent_head + 1) % k->stat_size;
		if (!k->freeze)
			tlcm_kswin_push_ref(k, out);
	} else {
		k->recent[(k->recent_head + k->nrecent++) % k->stat_size] = x;
	}
}

bool tlcm_kswin_update(tlcm_kswin_t *k, double x)
{
	uint32_t cap = k->window_size - k->stat_size, r = k->stat_size;
	tlcm_kswin_push_recent(k, x);
	k->drift = false;
	if (k->nref < cap || k->nrecent < r)
		return false;
	/* Knuth's selection sampling: r of the cap reference samples */
	uint32_t got = 0;
	for (uint32_t i = 0; i < cap && got < r; i++) {
		double u = (double)(tlcm_drift_rand(&k->rng) >> 11) * 0x1p-53;
		if (u * (double)(cap - i) < (double)(r - got))
			k->wa[got++] = tlcm_kswin_ref_at(k, i);
	}
	for (uint32_t i = 0; i < r; i++)
		k->wb[i] = tlcm_kswin_recent_at(k, i);
	k->p_value = tlcm_ks_2samp(k->wa, r, k->wb, r, &k->stat);
	if (k->p_value <= k->alpha && k->stat > 0.1) {
		k->drift = true;
		if (!k->keep_ref)
			k->nref = k->ref_head = 0;
	}
	return k->drift;
}

/* ---- Kolmogorov-Smirnov ------------------------------------------------- */

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* qsort's indirect calls dominate for KSWIN's small samples */
static void sort_doubles(double *v, size_t n)
{
	if (n > 64) {
		qsort(v, n, sizeof *v, cmp_double);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		double x = v[i];
		size_t j = i;
		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* Probability that a uniformly random lattice path from (0,0) to (n,m)
 * touches a point with |i*m/g - j*n/g| >= h, i.e. P(D >= h / lcm). The
 * path is walked as a Markov chain (step i with probability
 * (n-i)/(n-i+m-j)), so nothing overflows; the mass that leaves the band
 * is summed directly, keeping small p-values precise. Row i only visits
 * the band of j inside the boundary, so small D costs little. */
double tlcm_ks_exact_sf(size_t n, size_t m, uint64_t h)
{
	if (h == 0 || n == 0 || m == 0)
		return 1.0;
	long long A = (long long)(m / gcd(n, m)), B = (long long)(n / gcd(n, m));
	long long H = (long long)h;
	double *mem = calloc(2 * (m + 1) + n + m + 1, sizeof *mem);
	if (!mem)
		return -1.0;
	double *cur = mem, *nxt = mem + m + 1, *inv = mem + 2 * (m + 1);
	for (size_t r = 1; r <= n + m; r++)
		inv[r] = 1.0 / (double)r;
	double out = 0.0;
	cur[0] = 1.0;
	for (size_t i = 0; i <= n; i++) {
		/* inside: i*A - H < j*B < i*A + H */
		long long below = (long long)i * A - H;
		long long lo = below < 0 ? 0 : below / B + 1;
		long long hi = ((long long)i * A + H - 1) / B;
		size_t jlo = lo < 0 ? 0 : (size_t)lo;
		size_t jhi = hi > (long long)m ? m : (size_t)hi;
		for (size_t j = jlo; j <= jhi; j++) {
			double mass = cur[j];
			size_t rem = n - i + m - j;
			if (mass == 0.0 || rem == 0)
				continue;
			double w = mass * inv[rem];
			if (j < m) { /* to (i, j+1): outside past the band */
				if (j + 1 > jhi)
					out += w * (double)(m - j);
				else
					cur[j + 1] += w * (double)(m - j);
			}
			if (i < n) { /* to (i+1, j) */
				long long v = (long long)(i + 1) * A -
					      (long long)j * B;
				if (v >= H || -v >= H)
					out += w * (double)(n - i);
				else
					nxt[j] += w * (double)(n - i);
			}
			cur[j] = 0.0;
		}
		double *t = cur;
		cur = nxt;
		nxt = t;
	}
	free(mem);
	return out > 1.0 ? 1.0 : out;
}

double tlcm_kolmogorov_sf(double lambda)
{
	if (!(lambda > 0))
		return 1.0;
	if (lambda < 1.18) { /* the theta-function form converges fast here */
		double s = 0, c = M_PI * M_PI / (8.0 * lambda * lambda);
		for (int k = 1; k <= 20; k++)
			s += exp(-(double)((2 * k - 1) * (2 * k - 1)) * c);
		double q = 1.0 - sqrt(2.0 * M_PI) / lambda * s;
		return q < 0 ? 0 : q > 1 ? 1 : q;
	}
	double s = 0;
	for (int k = 1; k <= 100; k++) {
		double t = exp(-2.0 * k * k * lambda * lambda);
		s += (k % 2 ? t : -t);
		if (t < 1e-17)
			break;
	}
	double q = 2.0 * s;
	return q < 0 ? 0 : q > 1 ? 1 : q;
}

double tlcm_ks_2samp(double *a, size_t n, double *b, size_t m, double *d)
{
	*d = 0;
	if (n == 0 || m == 0)
		return 1.0;
	sort_doubles(a, n);
	sort_doubles(b, m);
	uint64_t g = gcd(n, m), A = m / g, B = n / g, lcm = (uint64_t)n * A;
	uint64_t h = 0;
	size_t i = 0, j = 0;
	while (i < n && j < m) { /* D in units of 1/lcm, exactly */
		double v = a[i] < b[j] ? a[i] : b[j];
		while (i < n && a[i] == v)
			i++;
		while (j < m && b[j] == v)
			j++;
		uint64_t diff = (uint64_t)llabs((long long)(i * A) -
						(long long)(j * B));
		if (diff > h)
			h = diff;
	}
	*d = (double)h / (double)lcm;
	if ((uint64_t)n * m <= TLCM_KS_EXACT_MAX) {
		double p = tlcm_ks_exact_sf(n, m, h);
		if (p >= 0)
			return p;
	}
	double en = (double)n * (double)m / (double)(n + m), s = sqrt(en);
	return tlcm_kolmogorov_sf((s + 0.12 + 0.11 / s) * *d);
}

/* ---- EWMA --------------------------------------------------------------- */

void tlcm_ewma_init(tlcm_ewma_t *e, double lambda, double L, double mu0,
		    double sigma0, int mode)
{
	e->lambda = lambda;
	e->L = L;
	e->mu0 = mu0;
	e->sigma0 = sigma0;
	e->mode = mode ? mode : TLCM_DRIFT_BOTH;
	tlcm_ewma_restart(e);
}

void tlcm_ewma_restart(tlcm_ewma_t *e)
{
	e->z = e->mu0;
	e->t = 0;
	e->limit = 0;
}

int tlcm_ewma_update(tlcm_ewma_t *e, double x)
{
	double l = e->lambda;
	e->t++;
	e->z = l * x + (1.0 - l) * e->z;
	double f = l / (2.0 - l) * (1.0 - pow(1.0 - l, 2.0 * (double)e->t));
	e->limit = e->L * e->sigma0 * sqrt(f);
	if ((e->mode & TLCM_DRIFT_UP) && e->z > e->mu0 + e->limit)
		return 1;
	if ((e->mode & TLCM_DRIFT_DOWN) && e->z < e->mu0 - e->limit)
		return -1;
	return 0;
}

double tlcm_ewma_score(const tlcm_ewma_t *e)
{
	double d = e->z - e->mu0;
	if (e->mode == TLCM_DRIFT_UP && d < 0)
		d = 0;
	if (e->mode == TLCM_DRIFT_DOWN && d > 0)
		d = 0;
	return e->limit > 0 ? fabs(d) / e->limit : 0.0;
}

/* ---- CUSUM -------------------------------------------------------------- */

double tlcm_cusum_update(tlcm_cusum_t *c, double x, double mean, double std)
{
	double z = (x - mean) / std;
	c->up = c->up + z - c->k;
	c->down = c->down - z - c->k;
	if (c->up < 0)
		c->up = 0;
	if (c->down < 0)
		c->down = 0;
	return tlcm_cusum_stat(c);
}

double tlcm_cusum_stat(const tlcm_cusum_t *c)
{
	double up = (c->mode & TLCM_DRIFT_UP) ? c->up : 0;
	double down = (c->mode & TLCM_DRIFT_DOWN) ? c->down : 0;
	return up > down ? up : down;
}

void tlcm_cusum_cap(tlcm_cusum_t *c, double cap)
{
	if (c->up > cap)
		c->up = cap;
	if (c->down > cap)
		c->down = cap;
}

/* ---- Welford ------------------------------------------------------------ */

void tlcm_welford_add(tlcm_welford_t *w, double x)
{
	w->n++;
	double d = x - w->mean;
	w->mean += d / (double)w->n;
	w->m2 += d * (x - w->mean);
}

double tlcm_welford_var(const tlcm_welford_t *w)
{
	return w->n < 2 ? 0.0 : w->m2 / (double)w->n;
}

/* ---- Jensen-Shannon ----------------------------------------------------- */

double tlcm_jsd(const double *p, const double *q, size_t k)
{
	double sp = 0, sq = 0;
	for (size_t i = 0; i < k; i++) {
		sp += p[i];
		sq += q[i];
	}
	if (!(sp > 0) || !(sq > 0))
		return 0.0;
	double js = 0;
	for (size_t i = 0; i < k; i++) {
		double a = p[i] / sp, b = q[i] / sq, mid = 0.5 * (a + b);
		if (a > 0)
			js += 0.5 * a * log2(a / mid);
		if (b > 0)
			js += 0.5 * b * log2(b / mid);
	}
	return js < 0 ? 0 : js > 1 ? 1 : js;
}
