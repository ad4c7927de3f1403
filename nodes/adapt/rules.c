/* rules.c — rollback rules and the KNN re-vote of the pre-check (see
 * rules.h). The vote mirrors nodes/knn/index.c exactly: same weights,
 * same tie rules, float arithmetic.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nodes/adapt/cluster.h"
#include "nodes/adapt/rules.h"

#define MAX_K 64
#define INV_EPS 1e-6f

int tlcm_adapt_rules_check(const tlcm_adapt_rules_t *r, double conf_before,
			   double conf_after, const char *dominant,
			   double share_before, double share_after,
			   size_t q_before, size_t q_after, char *why,
			   size_t len)
{
	if (r->confidence_ratio > 0 && conf_before > 0 &&
	    conf_after < r->confidence_ratio * conf_before) {
		snprintf(why, len, "confidence %.2f < %g x %.2f", conf_after,
			 r->confidence_ratio, conf_before);
		return 1;
	}
	if (r->share_ratio > 0 && share_before > 0 &&
	    share_after < r->share_ratio * share_before) {
		snprintf(why, len, "share of '%.40s' %.2f < %g x %.2f",
			 dominant ? dominant : "", share_after, r->share_ratio,
			 share_before);
		return 2;
	}
	if (r->growth_ratio > 0 && q_before > 0 &&
	    (double)q_after > r->growth_ratio * (double)q_before) {
		snprintf(why, len, "quarantine %zu > %g x %zu", q_after,
			 r->growth_ratio, q_before);
		return 3;
	}
	if (len)
		why[0] = 0;
	return 0;
}

float tlcm_adapt_distance(int metric, const float *a, const float *b,
			  size_t dim)
{
	if (metric == TLCM_ADAPT_MANHATTAN) {
		float s = 0;
		for (size_t j = 0; j < dim; j++)
			s += fabsf(a[j] - b[j]);
		return s;
	}
	if (metric == TLCM_ADAPT_COSINE) {
		float ab = 0, aa = 0, bb = 0;
		for (size_t j = 0; j < dim; j++) {
			ab += a[j] * b[j];
			aa += a[j] * a[j];
			bb += b[j] * b[j];
		}
		if (aa <= 0 || bb <= 0)
			return 1;
		float d = 1 - ab / (sqrtf(aa) * sqrtf(bb));
		return d < 0 ? 0 : d > 2 ? 2 : d;
	}
	float s; /* the clustering's vectorised kernel (1280 values: 10x) */
	tlcm_cluster_sqdist(a, b, 1, dim, &s, false);
	return sqrtf(s);
}

int tlcm_adapt_revote(size_t k, const int *labels, const float *dist,
		      int add, const float *add_dist, size_t m, bool inverse,
		      float *confidence)
{
	int lab[MAX_K];
	float d[MAX_K], w[MAX_K], total = 0, best = -1;
	if (k > MAX_K)
		k = MAX_K;
	/* merge: the new samples are the newest, so they go first among
	 * equal distances; keep the k nearest */
	size_t n = 0;
	for (size_t i = 0; i < k; i++) {
		lab[n] = labels[i];
		d[n++] = dist[i];
	}
	for (size_t j = 0; j < m; j++) {
		size_t p = n;
		while (p > 0 && d[p - 1] >= add_dist[j])
			p--;
		if (p >= k)
			continue;
		size_t last = n < k ? n : k - 1;
		for (size_t q = last; q > p; q--) {
			d[q] = d[q - 1];
			lab[q] = lab[q - 1];
		}
		d[p] = add_dist[j];
		lab[p] = add;
		if (n < k)
			n++;
	}
	for (size_t i = 0; i < n; i++) {
		w[i] = inverse ? 1.0f / (d[i] + INV_EPS) : 1.0f;
		total += w[i];
	}
	int winner = n ? lab[0] : -1;
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = lab[j] == lab[i];
		if (seen)
			continue;
		float t = 0;
		for (size_t j = i; j < n; j++)
			if (lab[j] == lab[i])
				t += w[j];
		if (t > best) {
			best = t;
			winner = lab[i];
		}
	}
	*confidence = n ? best / total : 0;
	return winner;
}
