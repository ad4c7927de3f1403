/* test_adapt_script.c — scripted source, collecting sink and counting
 * wrappers for the quarantine and adapter graph tests (see the header).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/log.h"
#include "fb/drift_fb.h"
#include "fb/features_fb.h"
#include "fb/frame_fb.h"
#include "fb/labeled_sample_fb.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_fb.h"
#include "fb/quarantine_notice_fb.h"
#include "nodes/nodes.h"
#include "tests/unit/test_adapt_script.h"

/* ---- collect -------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static ts_msg_t *msgs[TS_SLOTS];
static size_t nmsgs[TS_SLOTS], capmsgs[TS_SLOTS];

size_t tlcm_ts_count(int slot)
{
	pthread_mutex_lock(&mu);
	size_t n = nmsgs[slot];
	pthread_mutex_unlock(&mu);
	return n;
}

const ts_msg_t *tlcm_ts_msg(int slot, size_t i)
{
	pthread_mutex_lock(&mu);
	const ts_msg_t *m = i < nmsgs[slot] ? &msgs[slot][i] : NULL;
	pthread_mutex_unlock(&mu);
	return m;
}

static const tlcm_port_desc_t col_in[] = {{"in", "*", "anything", 0},
					  {0}};
static const tlcm_param_desc_t col_params[] = {
	{"slot", TLCM_P_INT, "0", "where to keep them", 0, TS_SLOTS - 1,
	 NULL, 0},
	{0},
};

static int col_process(tlcm_ctx_t *ctx, void *st, int port,
		       const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	int slot = (int)tlcm_param_int(ctx, "slot");
	void *d = aligned_alloc(8, (m->size + 8) & ~(size_t)7);
	if (!d)
		return TLCM_ENOMEM;
	memcpy(d, tlcm_msg_data(m), m->size);
	pthread_mutex_lock(&mu);
	if (nmsgs[slot] == capmsgs[slot]) {
		size_t nc = capmsgs[slot] ? 2 * capmsgs[slot] : 64;
		ts_msg_t *n = realloc(msgs[slot], nc * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&mu);
			free(d);
			return TLCM_ENOMEM;
		}
		msgs[slot] = n;
		capmsgs[slot] = nc;
	}
	ts_msg_t *t = &msgs[slot][nmsgs[slot]];
	memcpy(t->type, m->type, 4);
	t->type[4] = 0;
	t->data = d;
	t->size = m->size;
	nmsgs[slot]++;
	pthread_mutex_unlock(&mu);
	return 0;
}

static const tlcm_node_type_t collect_type = {
	.name = "collect", .doc = "keep every message (test sink)",
	.inputs = col_in, .params = col_params, .process = col_process};

/* ---- wrappers ----------------------------------------------------------- */

#define MAX_WRAPPED 8

typedef struct {
	const tlcm_node_type_t *real;
	tlcm_node_type_t w;
	char name[64];
} wrapped_t;

typedef struct {
	char id[32];
	_Atomic uint64_t processed[8];
	char described[8192];
} counts_t;

static wrapped_t wrapped[MAX_WRAPPED];
static size_t nwrapped;
static counts_t counts[MAX_WRAPPED];
static size_t ncounts;

static const tlcm_node_type_t *real_of(const char *wname)
{
	for (size_t i = 0; i < nwrapped; i++)
		if (!strcmp(wrapped[i].name, wname))
			return wrapped[i].real;
	return NULL;
}

static counts_t *counts_of(const char *id)
{
	pthread_mutex_lock(&mu);
	counts_t *c = NULL;
	for (size_t i = 0; i < ncounts && !c; i++)
		if (!strcmp(counts[i].id, id))
			c = &counts[i];
	if (!c && ncounts < MAX_WRAPPED) {
		c = &counts[ncounts++];
		snprintf(c->id, sizeof c->id, "%s", id);
	}
	pthread_mutex_unlock(&mu);
	return c;
}

uint64_t tlcm_ts_processed(const char *id, int port)
{
	counts_t *c = counts_of(id);
	return c ? atomic_load(&c->processed[port]) : 0;
}

const char *tlcm_ts_described(const char *id)
{
	counts_t *c = counts_of(id);
	return c ? c->described : "";
}

/* The wrapped type of the running node: found by its descriptor name,
 * which the engine does not expose, so by elimination over the ids. */
static const tlcm_node_type_t *type_of(tlcm_ctx_t *ctx);

static int w_process(tlcm_ctx_t *ctx, void *st, int port,
		     const tlcm_msg_t *m)
{
	const tlcm_node_type_t *t = type_of(ctx);
	int rc = t->process(ctx, st, port, m);
	counts_t *c = counts_of(tlcm_node_id(ctx));
	if (c && port < 8)
		atomic_fetch_add(&c->processed[port], 1);
	return rc;
}

static int w_eos(tlcm_ctx_t *ctx, void *st)
{
	const tlcm_node_type_t *t = type_of(ctx);
	int rc = t->eos ? t->eos(ctx, st) : 0;
	counts_t *c = counts_of(tlcm_node_id(ctx));
	if (c && t->describe &&
	    t->describe(ctx, st, c->described, sizeof c->described))
		c->described[0] = 0;
	return rc;
}

/* node id -> wrapped type name, filled by tlcm_ts_run from the YAML */
static char id_type[MAX_WRAPPED][2][64];
static size_t nid_type;

static const tlcm_node_type_t *type_of(tlcm_ctx_t *ctx)
{
	const char *id = tlcm_node_id(ctx);
	for (size_t i = 0; i < nid_type; i++)
		if (!strcmp(id_type[i][0], id))
			return real_of(id_type[i][1]);
	fprintf(stderr, "FAIL: wrapped node '%s' unknown\n", id);
	abort();
}

void tlcm_ts_wrap(tlcm_registry_t *reg, const char *name)
{
	wrapped_t *w = &wrapped[nwrapped++];
	w->real = tlcm_registry_find(reg, name);
	if (!w->real) {
		fprintf(stderr, "FAIL: no node type %s\n", name);
		exit(1);
	}
	snprintf(w->name, sizeof w->name, "w.%s", name);
	w->w = *w->real;
	w->w.name = w->name;
	w->w.process = w_process;
	w->w.eos = w_eos;
	tlcm_registry_add(reg, &w->w);
}

/* Remember "id: { type: w.X" pairs of the YAML. */
static void scan_ids(const char *yaml)
{
	nid_type = 0;
	for (const char *p = yaml; (p = strstr(p, "type: w.")); p++) {
		const char *e = p;
		while (e > yaml && e[-1] != '\n')
			e--;
		while (*e == ' ')
			e++;
		const char *c = strchr(e, ':');
		const char *t = p + 6, *te = t;
		while (*te && *te != ',' && *te != ' ' && *te != '}')
			te++;
		if (!c || nid_type == MAX_WRAPPED)
			break;
		snprintf(id_type[nid_type][0], 64, "%.*s", (int)(c - e), e);
		snprintf(id_type[nid_type][1], 64, "%.*s", (int)(te - t), t);
		nid_type++;
	}
}

/* ---- script ------------------------------------------------------------- */

static const ts_step_t *steps;
static size_t nsteps;

typedef struct {
	size_t i;
	uint64_t waiting_since; /* ns, 0: not waiting */
	bool told;
} src_t;

static const tlcm_port_desc_t src_out[] = {
	{"o0", "*", "", 0}, {"o1", "*", "", 0}, {"o2", "*", "", 0},
	{"o3", "*", "", 0}, {"o4", "*", "", 0}, {"o5", "*", "", 0},
	{0},
};

static int emit_pred(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 512);
	if (rc)
		return rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, s->s ? s->s : "");
	tlcm_fbb_ref_t t = s->truth ? tlcm_fbb_cstring(&b, s->truth) : 0;
	tlcm_fbb_ref_t f = s->dim ? tlcm_Prediction_features_create(
					    &b, s->x, s->dim) : 0;
	tlcm_Prediction_start(&b);
	tlcm_Prediction_add_frame_id(&b, s->frame);
	tlcm_Prediction_add_time_ns(&b, 1000 + s->frame);
	tlcm_Prediction_add_label(&b, l);
	tlcm_Prediction_add_confidence(&b, s->conf);
	tlcm_Prediction_add_mean_distance(&b, s->md);
	if (t)
		tlcm_Prediction_add_truth(&b, t);
	if (f)
		tlcm_Prediction_add_features(&b, f);
	if (s->nov != 0) /* NaN too */
		tlcm_Prediction_add_novelty(&b, s->nov);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_Prediction_end(&b),
			     tlcm_Prediction_IDENTIFIER);
}

static int emit_feat(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 256);
	if (rc)
		return rc;
	tlcm_fbb_ref_t e = tlcm_Features_embedding_create(&b, s->x, s->dim);
	tlcm_Features_start(&b);
	tlcm_Features_add_frame_id(&b, s->frame);
	tlcm_Features_add_time_ns(&b, 1000 + s->frame);
	tlcm_Features_add_embedding(&b, e);
	tlcm_Features_add_label(&b, s->i);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_Features_end(&b),
			     tlcm_Features_IDENTIFIER);
}

static int emit_smpl(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 512);
	if (rc)
		return rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, s->s);
	tlcm_fbb_ref_t e = s->dim ? tlcm_LabeledSample_embedding_create(
					    &b, s->x, s->dim) : 0;
	tlcm_LabeledSample_start(&b);
	tlcm_LabeledSample_add_frame_id(&b, s->frame);
	tlcm_LabeledSample_add_label(&b, l);
	if (e)
		tlcm_LabeledSample_add_embedding(&b, e);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_LabeledSample_end(&b),
			     tlcm_LabeledSample_IDENTIFIER);
}

static int emit_drift(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 512);
	if (rc)
		return rc;
	tlcm_fbb_ref_t d = tlcm_fbb_cstring(&b, "drift.test");
	tlcm_fbb_ref_t n = tlcm_fbb_cstring(&b, s->s);
	tlcm_fbb_ref_t m = tlcm_fbb_cstring(&b, "mean_distance");
	tlcm_DriftEvent_start(&b);
	tlcm_DriftEvent_add_kind(&b, (tlcm_DriftKind_enum_t)s->i);
	tlcm_DriftEvent_add_detector(&b, d);
	tlcm_DriftEvent_add_node(&b, n);
	tlcm_DriftEvent_add_metric(&b, m);
	tlcm_DriftEvent_add_frame_id(&b, s->frame);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_DriftEvent_end(&b),
			     tlcm_DriftEvent_IDENTIFIER);
}

static int emit_frame(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	size_t ch = s->i ? 3 : 1, n = (size_t)s->w * s->h * ch;
	uint8_t *px = malloc(n + 1);
	if (!px)
		return TLCM_ENOMEM;
	for (unsigned y = 0; y < s->h; y++)
		for (unsigned x = 0; x < s->w; x++) {
			uint8_t v = (uint8_t)((x + y + s->frame) % 256);
			uint8_t *p = px + ((size_t)y * s->w + x) * ch;
			p[0] = v;
			if (ch == 3)
				p[1] = p[2] = 0;
		}
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, n + 256);
	if (!rc) {
		tlcm_fbb_ref_t p = tlcm_Frame_pixels_create(&b, px, n);
		tlcm_Frame_start(&b);
		tlcm_Frame_add_id(&b, s->frame);
		tlcm_Frame_add_width(&b, s->w);
		tlcm_Frame_add_height(&b, s->h);
		tlcm_Frame_add_format(&b, s->i ? tlcm_PixelFormat_Rgb8
					       : tlcm_PixelFormat_Gray8);
		tlcm_Frame_add_pixels(&b, p);
		rc = tlcm_emit_end(ctx, s->port, &b, tlcm_Frame_end(&b),
				   tlcm_Frame_IDENTIFIER);
	}
	free(px);
	return rc;
}

static int emit_notice(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 256 + 8 * s->n);
	if (rc)
		return rc;
	tlcm_fbb_ref_t f = tlcm_QuarantineNotice_frame_ids_create(
		&b, s->frames, s->n);
	tlcm_QuarantineNotice_start(&b);
	tlcm_QuarantineNotice_add_kind(&b, (tlcm_NoticeKind_enum_t)s->i);
	tlcm_QuarantineNotice_add_frame_ids(&b, f);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_QuarantineNotice_end(&b),
			     tlcm_QuarantineNotice_IDENTIFIER);
}

static int emit_batch(tlcm_ctx_t *ctx, const ts_step_t *s)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, s->port, &b, 1024 + 256 * s->n);
	if (rc)
		return rc;
	tlcm_fbb_ref_t r[256];
	for (size_t i = 0; i < s->n && i < 256; i++) {
		const ts_bsample_t *q = &s->bs[i];
		tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, q->label);
		tlcm_fbb_ref_t x = tlcm_QuarantinedSample_features_create(
			&b, q->x, s->dim);
		tlcm_QuarantinedSample_start(&b);
		tlcm_QuarantinedSample_add_frame_id(&b, q->frame);
		tlcm_QuarantinedSample_add_label(&b, l);
		tlcm_QuarantinedSample_add_confidence(&b, q->conf);
		tlcm_QuarantinedSample_add_mean_distance(&b, q->md);
		tlcm_QuarantinedSample_add_features(&b, x);
		r[i] = tlcm_QuarantinedSample_end(&b);
	}
	tlcm_fbb_ref_t v = tlcm_QuarantineBatch_samples_create(&b, r, s->n);
	tlcm_QuarantineBatch_start(&b);
	tlcm_QuarantineBatch_add_seq(&b, 1);
	tlcm_QuarantineBatch_add_size(&b, s->size ? s->size
						  : (uint32_t)s->n);
	tlcm_QuarantineBatch_add_samples(&b, v);
	return tlcm_emit_end(ctx, s->port, &b, tlcm_QuarantineBatch_end(&b),
			     tlcm_QuarantineBatch_IDENTIFIER);
}

static int src_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	src_t *p = st;
	static const uint8_t junk[16] = {9, 9, 9, 9, 1, 2, 3};
	(void)now;
	if (p->i >= nsteps)
		return TLCM_ECLOSED;
	const ts_step_t *s = &steps[p->i];
	int rc = 0;
	switch (s->kind) {
	case TS_WAIT:
		if (!s->until()) {
			uint64_t t = tlcm_now_ns();
			if (!p->waiting_since)
				p->waiting_since = t;
			if (!p->told && t - p->waiting_since > 10000000000ull) {
				fprintf(stderr, "script: step %zu still waiting "
					"after 10 s\n", p->i);
				p->told = true;
			}
			usleep(200);
			return 0;
		}
		p->waiting_since = 0;
		break;
	case TS_SLEEP: usleep(s->ms * 1000u); break;
	case TS_PRED: rc = emit_pred(ctx, s); break;
	case TS_FEAT: rc = emit_feat(ctx, s); break;
	case TS_SMPL: rc = emit_smpl(ctx, s); break;
	case TS_DRIFT: rc = emit_drift(ctx, s); break;
	case TS_FRAME: rc = emit_frame(ctx, s); break;
	case TS_NOTICE: rc = emit_notice(ctx, s); break;
	case TS_BATCH: rc = emit_batch(ctx, s); break;
	default: rc = tlcm_emit(ctx, s->port, s->s, junk, 16); break;
	}
	p->i++;
	return rc;
}

static int src_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 0);
	return 0;
}

static const tlcm_node_type_t script_type = {
	.name = "script", .doc = "scripted messages (test source)",
	.outputs = src_out, .state_size = sizeof(src_t), .init = src_init,
	.tick = src_tick};

/* ---- runs ----------------------------------------------------------------- */

void tlcm_ts_setup(tlcm_registry_t *reg)
{
	tlcm_builtin_nodes(reg);
	tlcm_registry_add(reg, &script_type);
	tlcm_registry_add(reg, &collect_type);
}

void tlcm_ts_reset(void)
{
	pthread_mutex_lock(&mu);
	for (int s = 0; s < TS_SLOTS; s++) {
		for (size_t i = 0; i < nmsgs[s]; i++)
			free(msgs[s][i].data);
		free(msgs[s]);
		msgs[s] = NULL;
		nmsgs[s] = capmsgs[s] = 0;
	}
	for (size_t i = 0; i < ncounts; i++) {
		for (int p = 0; p < 8; p++)
			atomic_store(&counts[i].processed[p], 0);
		counts[i].described[0] = 0;
	}
	pthread_mutex_unlock(&mu);
}

int tlcm_ts_run(const tlcm_registry_t *reg, const char *yaml,
		const ts_step_t *st, size_t n, tlcm_run_result_t *res)
{
	char path[] = "/tmp/tlcm-adapt-XXXXXX.yaml";
	memset(res, 0, sizeof *res);
	tlcm_ts_reset();
	scan_ids(yaml);
	steps = st;
	nsteps = n;
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		fprintf(stderr, "FAIL: cannot write %s\n", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, reg, NULL, 0, &d);
	unlink(path);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return rc;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

int tlcm_ts_run_logged(const tlcm_registry_t *reg, const char *yaml,
		       const ts_step_t *st, size_t n,
		       tlcm_run_result_t *res, const char *path, int level)
{
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC,
				      0600);
	dup2(fd, 2);
	close(fd);
	int lvl = tlcm_log_level;
	tlcm_log_level = level;
	int rc = tlcm_ts_run(reg, yaml, st, n, res);
	tlcm_log_level = lvl;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	return rc;
}
