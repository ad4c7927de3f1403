/* index.h — a small exact k-nearest-neighbour classifier, no graph needed.
 *
 * The index keeps up to max_samples labelled vectors of one dimension in
 * one contiguous row-major array (float32, or int8 codes with one scale per
 * vector when quantised) and answers a query with the k nearest stored
 * samples and a weighted vote over their labels.
 *
 * Queries. A distance kernel (dist.h: AVX2+FMA when the CPU has it, else
 * portable vectorised C) computes the query's distance to every stored
 * row; a bounded insertion buffer keeps the k best (partial selection, no
 * sort of the n distances), offered only the distances not above a bound
 * that the minima of small groups of them give (few more than k). Order:
 * smaller distance first; equal distances: the newer sample (later
 * insertion) first. Rows are stored 64-byte aligned. The vote gives each
 * neighbour weight 1 (uniform) or 1 / (distance + 1e-6) (inverse); the
 * label with the largest total wins, a tie going to the label with the
 * nearest neighbour; confidence = its total / the sum of all weights.
 *   euclidean  sqrt(sum (q - x)^2); squared values are compared, the root
 *              is taken for the k reported distances only
 *   cosine     1 - q.x / (|q| |x|), clamped to [0, 2]; a zero vector has
 *              similarity 0 (distance 1) to everything
 *   manhattan  sum |q - x|
 *
 * Quantised storage (quantize): each vector x is stored as int8 codes
 * c = round(x / s), s = max|x_j| / 127 (symmetric, per vector: no
 * calibration, any range, 4x less memory and bandwidth). Every value is
 * off by at most s / 2, so a Euclidean distance is off by at most
 * sqrt(dim) * s / 2 (tests/unit/test_knn_index.c checks this bound and
 * the label agreement with the float index). Euclidean distances come from
 * |q|^2 - 2 s q.c + s^2 |c|^2 (the last term kept per sample).
 *
 * Capacity and eviction. The arrays grow to max_samples; then each new
 * sample replaces a victim:
 *   fifo                   the oldest sample;
 *   class_balanced         the oldest sample of the largest class (of all
 *                          classes tied for largest, the oldest sample);
 *   least_recently_useful  the sample least recently useful: each sample
 *                          has a stamp, the query count when it was added
 *                          and again whenever it is among the k neighbours
 *                          of a query; the smallest stamp goes (ties: the
 *                          oldest). A new sample thus gets as much time to
 *                          prove useful as its neighbours had.
 *
 * Labels are strings (1..255 bytes) interned as small ids; an id stays
 * valid until the next add/relabel/put (the id of a label no sample uses
 * any more is recycled). Samples carry the frame id they came from:
 * adding a sample whose non-zero frame id is already stored relabels the
 * stored sample(s) instead of adding one (ground truth for a sample
 * learned earlier, or a warm-up stream replayed after a restore).
 *
 * Values must be finite and at most 1e15 in magnitude (larger ones could
 * overflow float32 distances); such vectors are refused (TLCM_EINVAL).
 * Not thread-safe: one index, one thread at a time.
 */
#ifndef TLCM_KNN_INDEX_H
#define TLCM_KNN_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLCM_KNN_MAX_K 64
#define TLCM_KNN_MAX_DIM 65536
#define TLCM_KNN_MAX_LABEL 255
#define TLCM_KNN_MAX_LABELS 65535
#define TLCM_KNN_MAX_SAMPLES 10000000
#define TLCM_KNN_MAX_VALUE 1e15f

typedef enum { TLCM_KNN_EUCLIDEAN, TLCM_KNN_COSINE, TLCM_KNN_MANHATTAN }
	tlcm_knn_metric_t;
typedef enum { TLCM_KNN_UNIFORM, TLCM_KNN_INVERSE } tlcm_knn_weighting_t;
typedef enum { TLCM_KNN_FIFO, TLCM_KNN_CLASS_BALANCED, TLCM_KNN_LRU }
	tlcm_knn_eviction_t;

typedef struct tlcm_knn_opts {
	size_t dim;         /* 0: taken from the first sample */
	unsigned k;         /* 1..TLCM_KNN_MAX_K */
	tlcm_knn_metric_t metric;
	tlcm_knn_weighting_t weighting;
	size_t max_samples; /* 1..TLCM_KNN_MAX_SAMPLES */
	tlcm_knn_eviction_t eviction;
	bool quantize;      /* int8 storage */
	bool portable;      /* portable kernels even when AVX2 is there */
} tlcm_knn_opts_t;

typedef struct tlcm_knn tlcm_knn_t;

typedef struct tlcm_knn_result {
	size_t n;                       /* neighbours: min(k, samples) */
	uint32_t slot[TLCM_KNN_MAX_K];  /* stored sample index, nearest first */
	uint32_t label[TLCM_KNN_MAX_K]; /* their label ids */
	float dist[TLCM_KNN_MAX_K];     /* their distances */
	uint32_t winner;                /* label id of the vote (n > 0) */
	float confidence;               /* its weighted vote share, 0..1 */
	float mean_distance;            /* mean of dist[0..n) */
} tlcm_knn_result_t;

/* A stored sample as the index keeps it (snapshots, tests). */
typedef struct tlcm_knn_sample {
	uint64_t frame_id, seq, used; /* seq: insertion order, 1, 2, ... */
	uint32_t label;
	const float *x;      /* dim floats (float storage), else NULL */
	const int8_t *codes; /* dim codes (quantised), else NULL */
	float scale;         /* quantised: value = scale * code */
} tlcm_knn_sample_t;

typedef struct tlcm_knn_stats {
	uint64_t added, evictions, relabels, queries;
	uint64_t next_seq; /* the next sample's seq */
} tlcm_knn_stats_t;

/* Create an empty index; TLCM_EINVAL for options out of range. */
int tlcm_knn_new(tlcm_knn_t **out, const tlcm_knn_opts_t *o);
void tlcm_knn_free(tlcm_knn_t *ix);

/* The options in force (dim filled in once known). */
const tlcm_knn_opts_t *tlcm_knn_opts(const tlcm_knn_t *ix);
/* k and weighting may change at any time. */
int tlcm_knn_set_k(tlcm_knn_t *ix, unsigned k);
void tlcm_knn_set_weighting(tlcm_knn_t *ix, tlcm_knn_weighting_t w);
size_t tlcm_knn_size(const tlcm_knn_t *ix);
const char *tlcm_knn_kernel_name(const tlcm_knn_t *ix);

/* Learn x (dim values) with label. When frame_id != 0 and samples with
 * that frame id are stored, relabel them instead and return 1; else add
 * (evicting when full) and return 0. TLCM_EINVAL: wrong dim, bad values
 * or label; TLCM_ETOOBIG: too many distinct labels; TLCM_ENOMEM. */
int tlcm_knn_add(tlcm_knn_t *ix, const float *x, size_t dim,
		 const char *label, uint64_t frame_id);
/* Give every stored sample with this frame id (!= 0) the label: returns
 * how many there were (0: none), or a negative error. */
int tlcm_knn_relabel(tlcm_knn_t *ix, uint64_t frame_id, const char *label);

/* The k nearest stored samples of q and their vote. Counts a query and
 * stamps the neighbours as useful. n = 0 when the index is empty. */
int tlcm_knn_query(tlcm_knn_t *ix, const float *q, size_t dim,
		   tlcm_knn_result_t *r);

/* Index of the first value of x[0..n) the index refuses (not finite, or
 * larger than TLCM_KNN_MAX_VALUE in magnitude), or n when all are fine. */
size_t tlcm_knn_bad_value(const float *x, size_t n);

/* A label's typical neighbour distance: the median over its samples (up
 * to 256, evenly spread) of their mean distance to their k nearest other
 * samples of the label, in the metric's reported form; 0 when it has
 * fewer than 2 samples. Cached until a sample of the label comes or goes
 * or k changes (1-4 ms for 256 samples of 32-256 values, then free). A
 * frame's mean_distance over this says how unusual it is *for the label it
 * was given*: classes differ in spread (a trouser's neighbours are much
 * closer than a shirt's), so a single threshold on mean_distance both
 * misses the new frames predicted as a tight class and flags the normal
 * frames of a loose one. */
float tlcm_knn_typical(tlcm_knn_t *ix, uint32_t id);

/* Labels: ids 0..nlabels-1; a name, and how many samples carry it. */
size_t tlcm_knn_nlabels(const tlcm_knn_t *ix);
const char *tlcm_knn_label_name(const tlcm_knn_t *ix, uint32_t id);
size_t tlcm_knn_label_count(const tlcm_knn_t *ix, uint32_t id);

/* Stored sample i (0..size-1; the order is the storage order). */
void tlcm_knn_sample(const tlcm_knn_t *ix, size_t i, tlcm_knn_sample_t *s);

/* Restore a sample with its bookkeeping (seq, used stamp, frame id),
 * stored as floats (x) or codes + scale, converted to the index's
 * storage. Evicts by the policy when full. Put samples in seq order. */
int tlcm_knn_put(tlcm_knn_t *ix, const char *label, uint64_t frame_id,
		 uint64_t seq, uint64_t used, const float *x,
		 const int8_t *codes, float scale, size_t dim);

void tlcm_knn_get_stats(const tlcm_knn_t *ix, tlcm_knn_stats_t *st);
void tlcm_knn_set_stats(tlcm_knn_t *ix, const tlcm_knn_stats_t *st);

#endif
