/* test_sched.c — the scheduler through whole graphs.
 *
 * Graphs are written as YAML and run with the real loader and scheduler,
 * with the test nodes plus a few defined here: `slow` (sleeps per message,
 * to build back-pressure), `twice` (the same, forwarding a copy too),
 * `probe` (detects two threads inside one node), `failer` (fails on a
 * chosen message), `ticker` (counts ticks), `ctl` (sends one control
 * message), `phaser`, `latch`, `counter` and `hold` (a source playing
 * phases with tlcm_graph_idle()), `vsrc` and `vsink` (emits verified or
 * not, and what consumers make of them). Checks: exactly-once
 * delivery on block edges including the drain after a stop,
 * back-pressure reaching the source, drop policies accounting for every
 * message, fan-out, actor exclusivity, on_error policies, the control
 * port, the idle barrier, per-node busy time, a stop request ending its
 * own run only (`linger`), verification once per message for all the
 * edges of a checked emit, no livelock when both workers help along a
 * full chain.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "fb/blob_fb.h"
#include "fb/control_fb.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

/* ---- test-only node types ---- */

static const tlcm_port_desc_t any_in[] = {{"in", "*", "any", 0}, {0}};
static const tlcm_port_desc_t any_out[] = {{"out", "*", "any", 0}, {0}};

static int slow_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	usleep(20);
	return tlcm_emit_msg(ctx, 0, m) == TLCM_EAGAIN ? 0 : 0;
}

static const tlcm_node_type_t slow_type = {
	.name = "slow", .doc = "sleep 20 us per message, forward it",
	.inputs = any_in, .outputs = any_out, .process = slow_process};

static int twice_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	usleep(20);
	int rc = tlcm_emit_msg(ctx, 0, m);
	/* the copy as another type: a sink checks Blob sequence numbers */
	if (!rc || rc == TLCM_EAGAIN)
		rc = tlcm_emit(ctx, 0, "COPY", tlcm_msg_data(m), m->size);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static const tlcm_node_type_t twice_type = {
	.name = "twice", .doc = "sleep 20 us per message, forward it and a "
	"copy (type COPY)",
	.inputs = any_in, .outputs = any_out, .process = twice_process};

static atomic_int probe_inside, probe_overlaps;
static atomic_ulong probe_count;

static int probe_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	(void)ctx;
	(void)m;
	(void)port;
	if (atomic_fetch_add(&probe_inside, 1) != 0)
		atomic_fetch_add(&probe_overlaps, 1);
	uint64_t *n = st; /* plain state: TSan reports unsynchronised use */
	(*n)++;
	for (volatile int i = 0; i < 50; i++)
		;
	atomic_fetch_add(&probe_count, 1);
	atomic_fetch_sub(&probe_inside, 1);
	return 0;
}

static const tlcm_port_desc_t probe_in[] = {
	{"a", "*", "", 0}, {"b", "*", "", TLCM_PORT_OPTIONAL}, {0}};

static const tlcm_node_type_t probe_type = {
	.name = "probe", .doc = "detect concurrent calls", .inputs = probe_in,
	.state_size = sizeof(uint64_t), .process = probe_process};

static const tlcm_param_desc_t failer_params[] = {
	{"at", TLCM_P_INT, "10", "fail on this message", 0, 0, NULL, 0},
	{"bad", TLCM_P_BOOL, "false", "fail with TLCM_EBADMSG (a bad message) "
	 "instead of TLCM_EIO", 0, 0, NULL, 0},
	{0}};

typedef struct {
	int64_t n;
} failer_t;

static int failer_inits;

static int failer_init(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	(void)st;
	failer_inits++;
	return 0;
}

static int failer_process(tlcm_ctx_t *ctx, void *st, int port,
			  const tlcm_msg_t *m)
{
	failer_t *f = st;
	(void)port;
	if (++f->n == tlcm_param_int(ctx, "at"))
		return tlcm_param_bool(ctx, "bad") ? TLCM_EBADMSG : TLCM_EIO;
	return tlcm_emit_msg(ctx, 0, m) == TLCM_EAGAIN ? 0 : 0;
}

static const tlcm_node_type_t failer_type = {
	.name = "failer", .doc = "fail on message `at`", .inputs = any_in,
	.outputs = any_out, .params = failer_params,
	.state_size = sizeof(failer_t), .init = failer_init,
	.process = failer_process};

static atomic_int ticks;

static int ticker_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 5000000); /* 5 ms */
	return 0;
}

static int ticker_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)ctx;
	(void)st;
	(void)now;
	atomic_fetch_add(&ticks, 1);
	return 0;
}

static const tlcm_node_type_t ticker_type = {
	.name = "ticker", .doc = "count ticks", .init = ticker_init,
	.tick = ticker_tick};

/* ctl: sends one control message (SetParam name=value) then finishes */
static const tlcm_port_desc_t ctl_out[] = {{"out", "CTRL", "", 0}, {0}};
static const tlcm_param_desc_t ctl_params[] = {
	{"name", TLCM_P_STRING, "rate_hz", "", 0, 0, NULL, 0},
	{"value", TLCM_P_STRING, "5", "", 0, 0, NULL, 0},
	{0}};

static int ctl_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int ctl_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)st;
	(void)now;
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 256);
	if (rc)
		return rc;
	tlcm_fbb_ref_t n = tlcm_fbb_cstring(&b, tlcm_param_str(ctx, "name"));
	tlcm_fbb_ref_t v = tlcm_fbb_cstring(&b, tlcm_param_str(ctx, "value"));
	tlcm_Control_start(&b);
	tlcm_Control_add_op(&b, tlcm_ControlOp_SetParam);
	tlcm_Control_add_name(&b, n);
	tlcm_Control_add_value(&b, v);
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_Control_end(&b),
			   tlcm_Control_IDENTIFIER);
	return rc ? rc : TLCM_ECLOSED;
}

static const tlcm_node_type_t ctl_type = {
	.name = "ctl", .doc = "send one SetParam", .outputs = ctl_out,
	.params = ctl_params, .init = ctl_init, .tick = ctl_tick};

static atomic_int watched_changes;
static double watched_value;

static const tlcm_param_desc_t watched_params[] = {
	{"rate_hz", TLCM_P_FLOAT, "1", "", 0, 100, NULL, TLCM_PARAM_RUNTIME},
	{"fixed", TLCM_P_INT, "1", "", 0, 0, NULL, 0},
	{0}};

static int watched_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	(void)st;
	if (!strcmp(name, "rate_hz"))
		watched_value = tlcm_param_float(ctx, "rate_hz");
	atomic_fetch_add(&watched_changes, 1);
	return 0;
}

static int watched_process(tlcm_ctx_t *ctx, void *st, int port,
			   const tlcm_msg_t *m)
{
	(void)ctx, (void)st, (void)port, (void)m;
	return 0;
}

static const tlcm_node_type_t watched_type = {
	.name = "watched", .doc = "records param changes", .inputs = any_in,
	.params = watched_params, .process = watched_process,
	.param_changed = watched_changed};

/* phaser: plays two phases of PHASE_N messages, waiting for the graph to
 * go idle after each (the first time inside one tick, so the feedback
 * edge back to it is full of unread messages then; the second time by
 * returning 0 until idle). What it saw is recorded in `phases`. latch:
 * holds its first message until the phaser opened the gate (so the graph
 * is certainly busy right after the first phase's emit), then forwards
 * each after 1 ms. counter: counts. hold: keeps the phaser's regular
 * input open until the phaser is done. */
#define PHASE_N 20

static atomic_int latch_gate, phaser_done;
static atomic_ulong counted;

static struct {
	int idle_after_emit, idle1, idle2;
	uint64_t counted1, fb1, counted2;
} phases;

static const tlcm_port_desc_t phaser_in[] = {
	{"in", "*", "kept open by hold", 0},
	{"fb", "*", "feedback", TLCM_PORT_OPTIONAL},
	{0}};

typedef struct {
	int phase;
	uint64_t fb;
} phaser_t;

static int phaser_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int phaser_emit(tlcm_ctx_t *ctx, int from)
{
	for (int i = from; i < from + PHASE_N; i++) {
		uint64_t v = (uint64_t)i;
		int rc = tlcm_emit(ctx, 0, "TEST", &v, sizeof v);
		if (rc)
			return rc;
	}
	return 0;
}

static int phaser_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	phaser_t *p = st;
	int rc;
	switch (p->phase) {
	case 0:
		if ((rc = phaser_emit(ctx, 0)))
			return rc;
		phases.idle_after_emit = tlcm_graph_idle(ctx);
		atomic_store(&latch_gate, 1);
		/* wait inside this tick: nothing on fb is taken meanwhile;
		 * the deadline only keeps a broken barrier from hanging */
		uint64_t give_up = now + 30000000000ull;
		while (!(phases.idle1 = tlcm_graph_idle(ctx)) &&
		       tlcm_now_ns() < give_up)
			usleep(200);
		phases.counted1 = atomic_load(&counted);
		phases.fb1 = p->fb;
		if ((rc = phaser_emit(ctx, PHASE_N)))
			return rc;
		p->phase = 1;
		return 0;
	default:
		if (!tlcm_graph_idle(ctx)) {
			usleep(200);
			return 0;
		}
		phases.idle2 = 1;
		phases.counted2 = atomic_load(&counted);
		atomic_store(&phaser_done, 1);
		return TLCM_ECLOSED;
	}
}

static int phaser_process(tlcm_ctx_t *ctx, void *st, int port,
			  const tlcm_msg_t *m)
{
	phaser_t *p = st;
	(void)ctx;
	(void)m;
	if (port == 1)
		p->fb++;
	return 0;
}

static const tlcm_node_type_t phaser_type = {
	.name = "phaser", .doc = "emit, wait until idle, go on",
	.inputs = phaser_in, .outputs = any_out,
	.state_size = sizeof(phaser_t), .init = phaser_init,
	.tick = phaser_tick, .process = phaser_process};

static int latch_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	while (!atomic_load(&latch_gate))
		usleep(100);
	usleep(1000);
	return tlcm_emit_msg(ctx, 0, m);
}

static const tlcm_node_type_t latch_type = {
	.name = "latch", .doc = "wait for the gate, then 1 ms per message",
	.inputs = any_in, .outputs = any_out, .process = latch_process};

static int counter_process(tlcm_ctx_t *ctx, void *st, int port,
			   const tlcm_msg_t *m)
{
	(void)ctx, (void)st, (void)port, (void)m;
	atomic_fetch_add(&counted, 1);
	return 0;
}

static const tlcm_node_type_t counter_type = {
	.name = "counter", .doc = "count messages", .inputs = any_in,
	.process = counter_process};

static int hold_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 5000000); /* 5 ms */
	return 0;
}

static int hold_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)ctx, (void)st, (void)now;
	return atomic_load(&phaser_done) ? TLCM_ECLOSED : 0;
}

static const tlcm_node_type_t hold_type = {
	.name = "hold", .doc = "emit nothing until the phaser is done",
	.outputs = any_out, .init = hold_init, .tick = hold_tick};

/* linger: a source that keeps its graph running for `ms` of wall time,
 * or until the graph stops (linger_stopped says which, from its eos);
 * with `stop` it asks for the stop itself at its first tick. */
static atomic_int linger_stopped;

static const tlcm_param_desc_t linger_params[] = {
	{"ms", TLCM_P_INT, "600", "", 0, 600000, NULL, 0},
	{"stop", TLCM_P_BOOL, "false", "", 0, 0, NULL, 0},
	{0},
};

typedef struct {
	uint64_t until;
	bool stop;
} linger_t;

static int linger_init(tlcm_ctx_t *ctx, void *st)
{
	linger_t *l = st;
	l->until = tlcm_now_ns() +
		   (uint64_t)tlcm_param_int(ctx, "ms") * 1000000u;
	l->stop = tlcm_param_bool(ctx, "stop");
	tlcm_set_tick(ctx, 5000000); /* 5 ms */
	return 0;
}

static int linger_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	linger_t *l = st;
	(void)ctx;
	if (l->stop) {
		l->stop = false;
		tlcm_request_stop();
	}
	return now >= l->until ? TLCM_ECLOSED : 0;
}

/* a source is finished without a tick when the graph stops: eos tells */
static int linger_eos(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	atomic_store(&linger_stopped, tlcm_stopping(ctx));
	return 0;
}

static const tlcm_node_type_t linger_type = {
	.name = "linger", .doc = "keep the graph running for a while",
	.params = linger_params, .state_size = sizeof(linger_t),
	.init = linger_init, .tick = linger_tick, .eos = linger_eos};

/* ---- helpers ---- */

/* vsrc: emits `count` Blobs, each way a node can: `checked`
 * (tlcm_emit_end_checked), `plain` (tlcm_emit_end), `raw` (tlcm_emit of
 * the same bytes), or `bad` (checked against a verifier that refuses:
 * nothing may go out, every call must fail with TLCM_EINVAL). vsink
 * counts what arrives as tlcm_msg_verified() says and checks that
 * tlcm_expect_msg() takes each message. */
static atomic_int vsrc_refused;
static atomic_int vsink_seen, vsink_verified, vsink_bad;

static const tlcm_port_desc_t blob_out[] = {{"out", "BLOB", "", 0}, {0}};
static const tlcm_port_desc_t blob_in[] = {{"in", "BLOB", "", 0}, {0}};
static const tlcm_param_desc_t vsrc_params[] = {
	{"mode", TLCM_P_ENUM, "checked", "", 0, 0, "checked|plain|raw|bad", 0},
	{"count", TLCM_P_INT, "100", "", 1, 100000, NULL, 0},
	{0}};

static int refuse_all(const void *buf, size_t len, const char **why)
{
	(void)buf;
	(void)len;
	*why = "refused by the test";
	return TLCM_EINVAL;
}

static int vsrc_init(tlcm_ctx_t *ctx, void *st)
{
	*(int64_t *)st = tlcm_param_int(ctx, "count");
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int vsrc_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)now;
	int64_t *left = st;
	if (*left <= 0)
		return TLCM_ECLOSED;
	const char *mode = tlcm_param_str(ctx, "mode");
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 128);
	if (rc)
		return rc;
	tlcm_Blob_start(&b);
	tlcm_Blob_add_seq(&b, (uint64_t)*left);
	tlcm_fbb_ref_t root = tlcm_Blob_end(&b);
	(*left)--;
	if (!strcmp(mode, "plain"))
		rc = tlcm_emit_end(ctx, 0, &b, root, tlcm_Blob_IDENTIFIER);
	else if (!strcmp(mode, "checked"))
		rc = tlcm_emit_end_checked(ctx, 0, &b, root,
					   tlcm_Blob_IDENTIFIER,
					   tlcm_Blob_verify_as_root);
	else if (!strcmp(mode, "bad")) {
		rc = tlcm_emit_end_checked(ctx, 0, &b, root,
					   tlcm_Blob_IDENTIFIER, refuse_all);
		atomic_fetch_add(&vsrc_refused, rc == TLCM_EINVAL);
		rc = 0;
	} else { /* raw: the finished bytes through tlcm_emit */
		size_t size;
		const void *buf = tlcm_fbb_finish(&b, root,
						  tlcm_Blob_IDENTIFIER, &size);
		uint8_t copy[128];
		memcpy(copy, buf, size);
		rc = tlcm_emit(ctx, 0, tlcm_Blob_IDENTIFIER, copy, size);
	}
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static const tlcm_node_type_t vsrc_type = {
	.name = "vsrc", .doc = "emit Blobs, verified or not",
	.outputs = blob_out, .params = vsrc_params,
	.state_size = sizeof(int64_t), .init = vsrc_init, .tick = vsrc_tick};

static int vsink_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	uint64_t bad = 0;
	atomic_fetch_add(&vsink_seen, 1);
	atomic_fetch_add(&vsink_verified, tlcm_msg_verified(ctx, m));
	if (tlcm_expect_msg(ctx, m, &bad, "in", "Blob", tlcm_Blob_IDENTIFIER,
			    tlcm_Blob_verify_as_root))
		atomic_fetch_add(&vsink_bad, 1);
	return 0;
}

static const tlcm_node_type_t vsink_type = {
	.name = "vsink", .doc = "count verified messages", .inputs = blob_in,
	.process = vsink_process};

static tlcm_registry_t reg;

static tlcm_graph_t *load(const char *yaml, const char *const *sets,
			  size_t nsets)
{
	char path[] = "/tmp/tlcm-test-XXXXXX.yaml";
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, sets, nsets, &d);
	if (rc)
		tlcm_diag_print(&d, stderr);
	CHECK_INT(rc, 0);
	tlcm_diag_fini(&d);
	unlink(path);
	return g;
}

static int run(tlcm_graph_t *g, double duration, tlcm_run_result_t *res)
{
	tlcm_run_opts_t o = {.duration_s = duration, .quiet = true};
	return tlcm_graph_run(g, &o, res);
}

static long node_index(const tlcm_graph_t *g, const char *id)
{
	for (size_t i = 0; i < g->nnodes; i++)
		if (!strcmp(g->nodes[i].id, id))
			return (long)i;
	return -1;
}

/* ---- tests ---- */

static void exactly_once_with_backpressure(void)
{
	/* small rings and a slow consumer: the source must be held back,
	 * and every message must arrive exactly once, in order */
	tlcm_graph_t *g = load(
		"graph: bp\n"
		"settings: { workers: 2 }\n"
		"nodes:\n"
		"  src: { type: gen, params: { count: 3000, payload: 100 } }\n"
		"  mid: { type: slow }\n"
		"  sink: { type: sink, params: { expect: 3000 } }\n"
		"edges:\n"
		"  - { from: src.out, to: mid.in, capacity: 4KiB }\n"
		"  - { from: mid.out, to: sink.in, capacity: 4KiB }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.edges[0].committed, 3000);
	CHECK_UINT(res.edges[0].dropped, 0);
	CHECK(res.edges[0].full > 0); /* the source met a full ring */
	CHECK_UINT(res.nodes[node_index(g, "sink")].in, 3000);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void drain_on_stop(void)
{
	/* an endless source stopped by duration: what it sent arrives */
	tlcm_graph_t *g = load(
		"graph: drain\n"
		"nodes:\n"
		"  src: { type: gen, params: { payload: 32 } }\n"
		"  t: { type: tee }\n"
		"  sink: { type: sink }\n"
		"edges:\n"
		"  - { from: src.out, to: t.in, capacity: 16KiB }\n"
		"  - { from: t.out, to: sink.in, capacity: 16KiB }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0.3, &res), 0);
	uint64_t sent = res.nodes[node_index(g, "src")].out;
	CHECK(sent > 0);
	CHECK_UINT(res.nodes[node_index(g, "t")].in, sent);
	CHECK_UINT(res.nodes[node_index(g, "sink")].in, sent);
	CHECK_UINT(res.edges[0].dropped + res.edges[1].dropped, 0);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void policies_and_fanout(void)
{
	tlcm_graph_t *g = load(
		"graph: fan\n"
		"nodes:\n"
		"  src: { type: gen, params: { count: 20000, payload: 200 } }\n"
		"  t: { type: tee }\n"
		"  all: { type: sink, params: { expect: 20000 } }\n"
		"  all2: { type: sink, params: { expect: 20000 } }\n"
		"  lossy: { type: slow }\n"
		"  lsink: { type: sink }\n"
		"edges:\n"
		"  - { from: src.out, to: t.in }\n"
		"  - { from: t.out, to: all.in }\n"
		"  - { from: t.out, to: all2.in }\n"
		"  - { from: t.out, to: lossy.in, capacity: 4KiB, policy: drop_newest }\n"
		"  - { from: lossy.out, to: lsink.in }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_STR(res.why, "");
	/* every message reached both full sinks (sink expect= checks order
	 * and integrity); the lossy edge accounts for every message */
	CHECK(res.edges[3].dropped > 0);
	CHECK_UINT(res.edges[3].committed + res.edges[3].dropped, 20000);
	CHECK_UINT(res.nodes[node_index(g, "lsink")].in, res.edges[3].committed);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	g = load("graph: oldest\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { count: 20000, payload: 200 } }\n"
		 "  lossy: { type: slow }\n"
		 "  lsink: { type: sink }\n"
		 "edges:\n"
		 "  - { from: src.out, to: lossy.in, capacity: 4KiB, policy: drop_oldest }\n"
		 "  - { from: lossy.out, to: lsink.in }\n",
		 NULL, 0);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK(res.edges[0].dropped > 0);
	CHECK_UINT(res.edges[0].consumed + res.edges[0].dropped, 20000);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void one_thread_per_node(void)
{
	atomic_store(&probe_overlaps, 0);
	atomic_store(&probe_count, 0);
	tlcm_graph_t *g = load(
		"graph: excl\n"
		"settings: { workers: 4 }\n"
		"nodes:\n"
		"  g1: { type: gen, params: { count: 30000, payload: 8 } }\n"
		"  g2: { type: gen, params: { count: 30000, payload: 8 } }\n"
		"  g3: { type: gen, params: { count: 30000, payload: 8 } }\n"
		"  p: { type: probe }\n"
		"edges:\n"
		"  - { from: g1.out, to: p.a, capacity: 4KiB }\n"
		"  - { from: g2.out, to: p.a, capacity: 4KiB }\n"
		"  - { from: g3.out, to: p.b, capacity: 4KiB }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_INT(atomic_load(&probe_overlaps), 0);
	CHECK_UINT(atomic_load(&probe_count), 90000);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

#define ERR_GRAPH(policy)                                                  \
	"graph: err\n"                                                     \
	"nodes:\n"                                                         \
	"  src: { type: gen, params: { count: 100 } }\n"                   \
	"  f: { type: failer, on_error: " policy ", params: { at: 10 } }\n" \
	"  sink: { type: sink }\n"                                         \
	"edges:\n"                                                         \
	"  - { from: src.out, to: f.in }\n"                                \
	"  - { from: f.out, to: sink.in }\n"

static void own_thread_and_pinning(void)
{
	/* the same exactly-once guarantee with a dedicated, pinned thread */
	tlcm_graph_t *g = load(
		"graph: own\n"
		"settings: { workers: 1 }\n"
		"nodes:\n"
		"  src: { type: gen, params: { count: 20000, payload: 16 } }\n"
		"  mid: { type: tee, thread: own, cpu: 0 }\n"
		"  sink: { type: sink, params: { expect: 20000 }, thread: own }\n"
		"edges:\n"
		"  - { from: src.out, to: mid.in, capacity: 4KiB }\n"
		"  - { from: mid.out, to: sink.in, capacity: 4KiB }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes[2].in, 20000);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void error_policies(void)
{
	const char *buf;
	tlcm_run_result_t res;

	buf = ERR_GRAPH("stop");
	tlcm_graph_t *g = load(buf, NULL, 0);
	CHECK_INT(run(g, 0, &res), TLCM_EIO);
	CHECK_CONTAINS(res.why, "node 'f' (type failer): process failed");
	CHECK_UINT(res.nodes[1].errors, 1);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	/* a bad message is skipped even under stop: bad input never stops
	 * a graph */
	const char *bad[] = {"f.bad=true"};
	g = load(ERR_GRAPH("stop"), bad, 1);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes[1].errors, 1);
	CHECK_UINT(res.nodes[2].in, 99);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	buf = ERR_GRAPH("skip");
	g = load(buf, NULL, 0);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_UINT(res.nodes[2].in, 99); /* one message failed */
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	/* restart: fini + init resets the node; 15 messages fail once */
	failer_inits = 0;
	const char *fifteen[] = {"src.count=15"};
	buf = ERR_GRAPH("restart");
	g = load(buf, fifteen, 1);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_UINT(res.nodes[1].restarts, 1);
	CHECK_INT(failer_inits, 2);
	CHECK_UINT(res.nodes[2].in, 14);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	/* restart, but failing every 10 messages: after 5 restarts in a
	 * minute the node gives up and the graph stops with the error */
	buf = ERR_GRAPH("restart");
	g = load(buf, NULL, 0);
	CHECK_INT(run(g, 0, &res), TLCM_EIO);
	CHECK_UINT(res.nodes[1].restarts, 5);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void timers_and_control(void)
{
	atomic_store(&ticks, 0);
	tlcm_graph_t *g = load("graph: tick\nnodes:\n  t: { type: ticker }\n",
			       NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0.2, &res), 0);
	CHECK(atomic_load(&ticks) > 0);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	atomic_store(&watched_changes, 0);
	g = load("graph: ctl\n"
		 "nodes:\n"
		 "  c: { type: ctl, params: { name: rate_hz, value: '42.5' } }\n"
		 "  c2: { type: ctl, params: { name: fixed, value: '7' } }\n"
		 "  c3: { type: ctl, params: { name: rate_hz, value: '1000' } }\n"
		 "  w: { type: watched }\n"
		 /* paced, so w is still there when the three ctl sources
		  * first run (control edges do not hold it open) */
		 "  src: { type: gen, params: { count: 10, rate_hz: 50 } }\n"
		 "edges:\n"
		 "  - { from: src.out, to: w.in }\n"
		 "  - { from: c.out, to: w.control }\n"
		 "  - { from: c2.out, to: w.control }\n"
		 "  - { from: c3.out, to: w.control }\n",
		 NULL, 0);
	CHECK_INT(run(g, 0, &res), 0);
	/* only the valid run-time change lands: 'fixed' is not run-time and
	 * 1000 is out of range */
	CHECK_INT(atomic_load(&watched_changes), 1);
	CHECK_DBL(watched_value, 42.5);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

/* A tlcm_request_stop() stops the run it was made in, not the next one
 * in the same process: each run counts the requests made since it
 * started. (Before, the request stayed pending and stopped the next run
 * at its first look, about 250 ms in, unless that run set
 * handle_signals.) */
static void stop_is_per_run(void)
{
	static const char *const stopper =
		"graph: stopper\n"
		"nodes:\n"
		"  l: { type: linger, params: { ms: 600000, stop: true } }\n";
	tlcm_graph_t *g = load(stopper, NULL, 0);
	tlcm_run_result_t res;
	atomic_store(&linger_stopped, 0);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_INT(atomic_load(&linger_stopped), 1);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	/* the next run lasts its 700 ms: several looks at the stop
	 * requests, none of them its own */
	g = load("graph: after\n"
		 "nodes:\n"
		 "  l: { type: linger, params: { ms: 700 } }\n",
		 NULL, 0);
	atomic_store(&linger_stopped, 1);
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_INT(atomic_load(&linger_stopped), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);

	/* the same with handle_signals, and a stop in it still stops it */
	g = load(stopper, NULL, 0);
	tlcm_run_opts_t o = {.quiet = true, .handle_signals = true};
	atomic_store(&linger_stopped, 0);
	CHECK_INT(tlcm_graph_run(g, &o, &res), 0);
	CHECK_INT(atomic_load(&linger_stopped), 1);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void idle_barrier(void)
{
	atomic_store(&latch_gate, 0);
	atomic_store(&phaser_done, 0);
	atomic_store(&counted, 0);
	memset(&phases, 0, sizeof phases);
	tlcm_graph_t *g = load(
		"graph: idle\n"
		"settings: { workers: 2 }\n"
		"nodes:\n"
		"  hold: { type: hold }\n"
		"  ph: { type: phaser, thread: own }\n"
		"  slow: { type: latch }\n"
		"  t: { type: tee }\n"
		"  count: { type: counter }\n"
		"edges:\n"
		"  - { from: hold.out, to: ph.in }\n"
		"  - { from: ph.out, to: slow.in }\n"
		"  - { from: slow.out, to: t.in }\n"
		"  - { from: t.out, to: count.in }\n"
		"  - { from: t.out, to: ph.fb, feedback: true }\n",
		NULL, 0);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_STR(res.why, "");
	/* right after the emit the latch holds the messages: busy */
	CHECK_INT(phases.idle_after_emit, 0);
	/* idle meant: all of the phase through the graph, although the
	 * feedback edge into the caller was full of unread messages */
	CHECK_INT(phases.idle1, 1);
	CHECK_UINT(phases.counted1, PHASE_N);
	CHECK_UINT(phases.fb1, 0);
	CHECK_INT(phases.idle2, 1);
	CHECK_UINT(phases.counted2, 2 * PHASE_N);
	CHECK_UINT(res.nodes[node_index(g, "count")].in, 2 * PHASE_N);
	/* busy time: at least the latch's 1 ms sleep per message; the
	 * others did some work */
	CHECK(res.nodes[node_index(g, "slow")].busy_ns >=
	      2 * PHASE_N * 1000000ull);
	CHECK(res.nodes[node_index(g, "count")].busy_ns > 0);
	CHECK(res.nodes[node_index(g, "ph")].busy_ns > 0);
	/* the process's CPU over the run: some, and no more than every CPU
	 * busy all the time (not the CPU of the tests before this one) */
	CHECK(res.cpu_seconds > 0);
	CHECK(res.cpu_seconds <=
	      res.seconds * (double)sysconf(_SC_NPROCESSORS_ONLN) + 0.01);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

static void sets_override(void)
{
	const char *sets[] = {"src.count=77", "sink.expect=77"};
	tlcm_graph_t *g = load("graph: s\n"
			       "nodes:\n"
			       "  src: { type: gen, params: { count: 5 } }\n"
			       "  sink: { type: sink, params: { expect: 5 } }\n"
			       "edges: [ { from: src.out, to: sink.in } ]\n",
			       sets, 2);
	tlcm_run_result_t res;
	CHECK_INT(run(g, 0, &res), 0);
	CHECK_UINT(res.nodes[1].in, 77);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

/* Regression (the issue-6 demo hang): a free-running source, then a
 * chain of pass-through nodes over small block edges, the second slow
 * and doubling the stream (src → p1 → twice → p2 → p3 → p4 → sink), two
 * workers. Once the chain is full, one worker runs the source, whose
 * emit meets a full edge and helps p1, gated by its full edge to `twice`;
 * the other runs `twice`, whose emits fill its output, then help p2 (p2
 * copies that edge into p2 → p3, queueing p3), then fill it again and
 * help p2 again, now gated by its full edge to p3. Before run() helped a
 * gated node's consumer, p2 just went idle and was helped again, round
 * after round: both workers spun and p3 never ran. (Doubling makes that
 * second fill happen within one message batch of `twice`, i.e. while it
 * still holds its input and p1 stays gated; with a plain slow node the
 * hang came in about half of the runs.) A watchdog turns such a hang
 * into a failure: it aborts the run as a second stop signal would, which
 * later runs would see too, so this test runs last. */
static atomic_int chain_done, chain_hung;

static void *chain_watchdog(void *arg)
{
	(void)arg;
	/* far longer than a run takes even on a loaded machine (< 1 s) */
	for (int i = 0; i < 2400 && !atomic_load(&chain_done); i++)
		usleep(50000);
	if (!atomic_load(&chain_done)) {
		atomic_store(&chain_hung, 1);
		fprintf(stderr, "FAIL: chain: not done after 120 s (livelock?)"
			"; aborting the run\n");
		tlcm_request_stop();
		tlcm_request_stop();
	}
	return NULL;
}

static void chain_no_livelock(void)
{
	enum { N = 4000, RUNS = 5 };
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "graph: chain\n"
		 "settings: { workers: 2 }\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { count: %d, payload: 100 } }\n"
		 "  p1: { type: tee }\n"
		 "  twice: { type: twice }\n"
		 "  p2: { type: tee }\n"
		 "  p3: { type: tee }\n"
		 "  p4: { type: tee }\n"
		 "  sink: { type: sink, params: { expect: %d } }\n"
		 "edges:\n"
		 "  - { from: src.out, to: p1.in, capacity: 4KiB }\n"
		 "  - { from: p1.out, to: twice.in, capacity: 4KiB }\n"
		 "  - { from: twice.out, to: p2.in, capacity: 4KiB }\n"
		 "  - { from: p2.out, to: p3.in, capacity: 4KiB }\n"
		 "  - { from: p3.out, to: p4.in, capacity: 4KiB }\n"
		 "  - { from: p4.out, to: sink.in, capacity: 4KiB }\n",
		 N, 2 * N);
	for (int r = 0; r < RUNS && !atomic_load(&chain_hung); r++) {
		tlcm_graph_t *g = load(yaml, NULL, 0);
		pthread_t wd;
		atomic_store(&chain_done, 0);
		pthread_create(&wd, NULL, chain_watchdog, NULL);
		tlcm_run_result_t res;
		int rc = run(g, 0, &res);
		atomic_store(&chain_done, 1);
		pthread_join(wd, NULL);
		CHECK_INT(atomic_load(&chain_hung), 0);
		CHECK_INT(rc, 0);
		CHECK_STR(res.why, "");
		for (size_t e = 0; e < res.nedges; e++) { /* 2 after twice */
			CHECK_UINT(res.edges[e].committed, e < 2 ? N : 2 * N);
			CHECK_UINT(res.edges[e].dropped, 0);
		}
		CHECK(res.edges[0].full > 0); /* the chain did fill up */
		CHECK_UINT(res.nodes[node_index(g, "sink")].in, 2 * N);
		tlcm_run_result_fini(&res);
		tlcm_graph_free(g);
	}
}

/* A message verified by its producer (tlcm_emit_end_checked) is marked
 * so on every edge and its consumers' tlcm_expect_msg trusts it; plain
 * and raw emits are not marked; one that fails verification is not sent. */
static void verified_once(void)
{
	static const struct {
		const char *mode;
		int verified, sent;
	} cases[] = {{"checked", 1, 1}, {"plain", 0, 1}, {"raw", 0, 1},
		     {"bad", 0, 0}};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		char yaml[512];
		snprintf(yaml, sizeof yaml,
			 "graph: v\n"
			 "nodes:\n"
			 "  src: { type: vsrc, params: { mode: %s, count: 50 } }\n"
			 "  a: { type: vsink }\n"
			 "  b: { type: vsink, thread: own }\n"
			 "edges:\n"
			 "  - { from: src.out, to: a.in }\n"
			 "  - { from: src.out, to: b.in }\n",
			 cases[k].mode);
		atomic_store(&vsink_seen, 0);
		atomic_store(&vsink_verified, 0);
		atomic_store(&vsink_bad, 0);
		atomic_store(&vsrc_refused, 0);
		tlcm_graph_t *g = load(yaml, NULL, 0);
		tlcm_run_result_t res;
		CHECK_INT(run(g, 0, &res), 0);
		int sent = cases[k].sent ? 100 : 0; /* 50 to each sink */
		CHECK_INT(atomic_load(&vsink_seen), sent);
		CHECK_INT(atomic_load(&vsink_verified),
			  cases[k].verified ? sent : 0);
		CHECK_INT(atomic_load(&vsink_bad), 0);
		CHECK_INT(atomic_load(&vsrc_refused), cases[k].sent ? 0 : 50);
		tlcm_run_result_fini(&res);
		tlcm_graph_free(g);
	}
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &slow_type);
	tlcm_registry_add(&reg, &twice_type);
	tlcm_registry_add(&reg, &probe_type);
	tlcm_registry_add(&reg, &failer_type);
	tlcm_registry_add(&reg, &ticker_type);
	tlcm_registry_add(&reg, &ctl_type);
	tlcm_registry_add(&reg, &watched_type);
	tlcm_registry_add(&reg, &phaser_type);
	tlcm_registry_add(&reg, &latch_type);
	tlcm_registry_add(&reg, &counter_type);
	tlcm_registry_add(&reg, &hold_type);
	tlcm_registry_add(&reg, &linger_type);
	tlcm_registry_add(&reg, &vsrc_type);
	tlcm_registry_add(&reg, &vsink_type);
	exactly_once_with_backpressure();
	drain_on_stop();
	policies_and_fanout();
	one_thread_per_node();
	own_thread_and_pinning();
	error_policies();
	timers_and_control();
	sets_override();
	idle_barrier();
	stop_is_per_run();
	verified_once();
	chain_no_livelock(); /* last: see there */
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
