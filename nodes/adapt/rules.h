/* rules.h — the adapter's safety rules and its pre-check, no graph needed.
 *
 * An adaptation is rolled back when, on held-out predictions (recent
 * predictions not used for the adaptation), compared with before it:
 *   1. the mean confidence falls below confidence_ratio (0.9) × before;
 *   2. the share of the label that dominated before falls below
 *      share_ratio (0.5) × its share before;
 *   3. the quarantine grows above growth_ratio (1.5) × its size before.
 * (the prototype's rules; a ratio of 0 switches a rule off).
 *
 * Pre-check: the KNN's answer for a held-out prediction after m samples of
 * one label are added is computable from what the KNN answered before —
 * its k nearest (label, distance) — and the distances to the new samples
 * (newer samples first among equal distances, the KNN's tie rule), so the
 * rules 1 and 2 can be evaluated on the very same held-out samples before
 * anything is sent (exact unless the KNN evicts samples to make room).
 */
#ifndef TLCM_ADAPT_RULES_H
#define TLCM_ADAPT_RULES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tlcm_adapt_rules {
	double confidence_ratio; /* rule 1 */
	double share_ratio;      /* rule 2 */
	double growth_ratio;     /* rule 3 */
} tlcm_adapt_rules_t;

/* Which rule fails (1..3), 0 when none; why gets the reason, e.g.
 * "confidence 0.61 < 0.9 x 0.74", "share of 'A' 0.10 < 0.5 x 0.40",
 * "quarantine 160 > 1.5 x 100". A rule with a before-value of 0 (no
 * data) passes. */
int tlcm_adapt_rules_check(const tlcm_adapt_rules_t *r, double conf_before,
			   double conf_after, const char *dominant,
			   double share_before, double share_after,
			   size_t q_before, size_t q_after, char *why,
			   size_t len);

enum { TLCM_ADAPT_EUCLIDEAN, TLCM_ADAPT_COSINE, TLCM_ADAPT_MANHATTAN };

/* Distance as the knn node computes it (metric TLCM_ADAPT_*). */
float tlcm_adapt_distance(int metric, const float *a, const float *b,
			  size_t dim);

/* The vote after adding m samples of label `add` at distances add_dist[]
 * to a query whose k nearest were (labels[i], dist[i]), nearest first.
 * inverse: weights 1 / (d + 1e-6), else 1. Returns the winning label (a
 * tie goes to the label of the nearest neighbour) and its vote share in
 * *confidence. k <= 64. */
int tlcm_adapt_revote(size_t k, const int *labels, const float *dist,
		      int add, const float *add_dist, size_t m, bool inverse,
		      float *confidence);

#endif
