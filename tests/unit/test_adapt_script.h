/* test_adapt_script.h — what the quarantine and adapter graph tests share:
 * a scripted source, a collecting sink, counting wrappers, graph runs.
 *
 * `script` (node type) plays a step list, one step per tick, on its
 * outputs o0..o5 (any type): Predictions, Features, LabeledSamples, drift
 * events, frames, quarantine notices and batches, junk, and waits (a
 * condition the test gives, e.g. "the quarantine has processed 3 drift
 * messages") — the engine orders messages within an edge only, so a test
 * that needs an order across edges waits for it. `collect` (param `slot`)
 * keeps a copy of every message it gets. tlcm_ts_wrap() registers "w.X",
 * node type X whose process() also counts messages per input port and
 * whose eos() saves describe(), looked up by node id.
 */
#ifndef TLCM_TEST_ADAPT_SCRIPT_H
#define TLCM_TEST_ADAPT_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/graph.h"
#include "engine/sched.h"

enum { TS_PRED, TS_FEAT, TS_SMPL, TS_DRIFT, TS_FRAME, TS_NOTICE, TS_BATCH,
       TS_JUNK, TS_WAIT, TS_SLEEP };

typedef struct ts_bsample { /* a sample of a scripted QuarantineBatch */
	uint64_t frame;
	const char *label;
	float conf, md;
	float x[8];
} ts_bsample_t;

typedef struct ts_step {
	int kind, port;
	uint64_t frame;
	const char *s;      /* label, drift node, junk type (4 chars) */
	const char *truth;  /* PRED: truth */
	int i;              /* FEAT class, DRFT kind, QNOT kind, FRAM
			       format (0 gray, 1 rgb) */
	float conf, md;
	float nov;          /* PRED: novelty (0: none sent) */
	size_t dim;
	float x[8];
	const uint64_t *frames; /* QNOT */
	size_t n;               /* QNOT frames, QBAT samples */
	const ts_bsample_t *bs; /* QBAT */
	uint32_t size;          /* QBAT size */
	bool (*until)(void);    /* WAIT */
	unsigned ms, w, h;      /* SLEEP; FRAM size (pixel = its value
				   at (x, y): (x + y + frame) % 256, rgb:
				   (v, 0, 0)) */
} ts_step_t;

/* One collected message. */
typedef struct ts_msg {
	char type[5];
	void *data; /* 8-byte aligned copy */
	size_t size;
} ts_msg_t;

#define TS_SLOTS 6
/* Messages collected per slot (valid until tlcm_ts_reset). */
size_t tlcm_ts_count(int slot);
const ts_msg_t *tlcm_ts_msg(int slot, size_t i);

/* Per wrapped node id: messages processed per input port, and the
 * describe() text saved at end of stream. */
uint64_t tlcm_ts_processed(const char *id, int port);
const char *tlcm_ts_described(const char *id);

/* Register script, collect and the built-in nodes; wrap type `name`. */
void tlcm_ts_setup(tlcm_registry_t *reg);
void tlcm_ts_wrap(tlcm_registry_t *reg, const char *name);

/* Forget collected messages and counters. */
void tlcm_ts_reset(void);

/* Run the YAML text with the script; res filled (fini it). Returns the
 * run's status, or the load error (diagnostics printed). */
int tlcm_ts_run(const tlcm_registry_t *reg, const char *yaml,
		const ts_step_t *steps, size_t n, tlcm_run_result_t *res);

/* Run with stderr into path at log level `level`. */
int tlcm_ts_run_logged(const tlcm_registry_t *reg, const char *yaml,
		       const ts_step_t *steps, size_t n,
		       tlcm_run_result_t *res, const char *path, int level);

#endif
