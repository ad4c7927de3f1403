/* xnn.h — running a validated model (nodes/features/model.h) on XNNPACK.
 *
 * tlcm_xnn_new() keeps the model and a thread pool; the first request for
 * a batch of n frames (tlcm_xnn_batch) translates the model into an
 * XNNPACK subgraph with batch dimension n, creates the runtime from it
 * and binds it once to buffers this object owns (input, one buffer per
 * model output), so running is: fill `input`, call tlcm_xnn_run(), read
 * `outputs`. Runtimes are kept per batch size for the life of the object.
 *
 * Why the subgraph API rather than the operator API: the model already is
 * a graph of static shapes, which is exactly what an XNNPACK subgraph
 * describes; the runtime then plans memory for the intermediate tensors,
 * fuses clamps into the producing operators and packs the weights once,
 * and one xnn_invoke_runtime() call runs the whole model with the thread
 * pool — the operator API would need the same bookkeeping written by hand
 * (a create/setup call per operator, buffers for every activation).
 *
 * Threads: `threads` > 1 creates a pthreadpool used by every runtime of
 * this object; 1 runs on the caller's thread. An object is used by one
 * thread at a time. xnn_initialize() is called once per process (thread
 * safe, on first use).
 *
 * The model must outlive the runtime (constant data is read in place).
 */
#ifndef TLCM_FEATURES_XNN_H
#define TLCM_FEATURES_XNN_H

#include <stddef.h>

#include "nodes/features/model.h"

typedef struct tlcm_xnn tlcm_xnn_t;

typedef struct tlcm_xnn_batch {
	size_t n;        /* frames */
	float *input;    /* n input tensors back to back (the caller fills) */
	float **outputs; /* per model output, in m->outputs order: n tensors
			    back to back */
	struct xnn_runtime *rt;
} tlcm_xnn_batch_t;

/* A runtime for m with `threads` threads (>= 1). Fails with TLCM_ENOTSUP
 * when XNNPACK cannot run on this CPU. */
int tlcm_xnn_new(tlcm_xnn_t **out, const tlcm_model_t *m, int threads,
		 char *why, size_t cap);
void tlcm_xnn_free(tlcm_xnn_t *x);

/* The buffers and runtime for batches of n frames (n >= 1), built on the
 * first call for this n. Errors name the op XNNPACK refused. */
int tlcm_xnn_batch(tlcm_xnn_t *x, size_t n, tlcm_xnn_batch_t **b, char *why,
		   size_t cap);
/* Run the model on b->input; results in b->outputs. */
int tlcm_xnn_run(tlcm_xnn_t *x, tlcm_xnn_batch_t *b, char *why, size_t cap);

#endif
