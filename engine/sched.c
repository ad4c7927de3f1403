/* sched.c — the graph runtime: contexts, emit, workers, timers, EOS,
 * shutdown (see sched.h and node.h).
 *
 * Each node has an atomic state IDLE → QUEUED → RUNNING → IDLE. Only the
 * thread that moves a node to RUNNING (by CAS) may call into it: that is
 * the whole "never two threads in one node" guarantee. After a run the
 * thread sets IDLE, then re-checks for work and arms the input rings (a
 * producer's next publish then calls wake()), so no wake-up is lost.
 *
 * A worker never sleeps on a full `block` edge while the node behind it
 * could run: it claims that consumer (IDLE or QUEUED → RUNNING) and runs
 * it right there, then retries. Consumers further down are helped the
 * same way, so a pool of any size cannot deadlock on a DAG of block edges
 * (feedback edges, the only cycles, never block: see graph.c).
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/introspect.h"
#include "engine/profile.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/control_fb.h"

#define BATCH 64          /* messages per peek */
#define BUDGET 512        /* messages per run, for fairness */
#define SOURCE_TICKS 256  /* free-running source ticks per run */
#define MAX_RANKS 64
#define RESTART_LIMIT 5

typedef struct in_edge {
	tlcm_ring_t *ring;
	size_t port;
	bool eos;
	bool optional_for_eos; /* feedback and control edges */
	bool trusted;          /* its producer runs in this process */
} in_edge_t;

typedef struct out_port {
	tlcm_ring_t **rings;
	struct tlcm_ctx **dst; /* consumer of each ring */
	size_t n;
} out_port_t;

enum { ST_IDLE, ST_QUEUED, ST_RUNNING };

typedef struct sched sched_t;

struct tlcm_ctx {
	sched_t *s;
	const tlcm_gnode_t *g;
	const tlcm_node_type_t *t;
	void *state;
	tlcm_pval_t *params; /* own copies: run-time changes land here */
	in_edge_t *in;
	size_t nin;
	out_port_t *out;
	size_t nout;
	_Atomic int run_state; /* ST_* */
	int rank;
	_Atomic uint64_t tick_period;
	_Atomic uint64_t next_tick;
	_Atomic int tick_due;
	_Atomic bool finished;
	uint64_t trace;
	bool in_trusted; /* the message being processed came from a node of
			    this process (tlcm_msg_verified) */
	uint64_t unverifiable; /* messages tlcm_emit_end_checked refused */
	/* figures read live by introspection: single writer (the node's
	 * thread), so relaxed load + store, no read-modify-write */
	struct {
		_Atomic uint64_t in, out, dropped, errors, restarts, batches;
		_Atomic uint64_t hist[48]; /* per-message process time, log2 ns */
		_Atomic uint64_t busy_ns; /* in process() and tick() */
	} st;
	_Atomic(const char *) last_error;
	unsigned restarts_window;
	uint64_t restart_window_start;
	/* emit_begin/end */
	tlcm_ring_t *emit_ring;
	uint8_t *scratch;
	size_t scratch_cap;
	/* isolate: process */
	bool isolated;
	pthread_t supervisor;
	_Atomic int pid;  /* the node's current process, 0 between lives */
	int zygote_pid;   /* forks the node's processes, see zygote_main */
	int zygote_fd;    /* our end of the stream socket to it */
	int snap_fd;      /* read end of the pipe its processes snapshot to */
	/* own thread */
	bool own;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ready;
};

struct sched {
	const tlcm_graph_t *g;
	tlcm_store_t *store; /* NULL without settings.store */
	tlcm_ctx_t *nodes;
	size_t n;
	tlcm_ring_t **rings;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* workers wait for ready nodes */
	pthread_cond_t done_cv; /* main waits for the end */
	size_t *q[MAX_RANKS];   /* ready queues per rank (circular) */
	size_t qhead[MAX_RANKS], qlen[MAX_RANKS], qcap[MAX_RANKS];
	int nranks;
	int nworkers;
	pthread_t *workers;
	pthread_t timer;
	pthread_cond_t timer_cv;
	_Atomic int stopping;
	_Atomic int exiting;
	_Atomic size_t nfinished;
	int status;
	char why[512];
	uint64_t t0;
	tlcm_introspect_t *introspect;
	/* tlcm_unique_id: ids below id_limit are reserved in the store */
	pthread_mutex_t id_mu;
	uint64_t id_next, id_limit;
};

/* Engine singleton: stop requests from signal handlers and from other
 * threads (tlcm_request_stop) for the graph being run. A lock-free atomic:
 * safe in a handler and seen across threads. It only ever grows: a run
 * counts the requests made since it started (see tlcm_graph_run), so a
 * stop that ended one run never stops the next, and a run never resets
 * what another one running at the same time has yet to see. */
static atomic_int stop_signals;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "stop_signals must be lock-free");

/* Process isolation (engine singletons, set once in a node's child
 * process right after fork): the child runs one node on one thread and
 * must not touch the parent's scheduler, locks or store. */
static bool child_mode;
static int child_snap_fd = -1;
static volatile sig_atomic_t child_stop;

#define RESTART_WINDOW_NS 60000000000ull

/* Wall time this thread spent running other nodes from inside a callback
 * (help(): a producer working off a full edge), so that a node's busy time
 * and process time leave out the consumers it ran. Per thread, engine
 * internal; help() sets it to its value before the run plus the run's
 * length, so nested helping is subtracted once. */
static _Thread_local uint64_t helped_ns;

#define BUMP(field, n)                                                     \
	atomic_store_explicit(&(field),                                     \
			      atomic_load_explicit(&(field),                \
						   memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

uint64_t tlcm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- node API ------------------------------------------------------------ */

const char *tlcm_node_id(const tlcm_ctx_t *c)
{
	return c->g->id;
}

static const tlcm_pval_t *param(const tlcm_ctx_t *c, const char *name,
				int type, int type2)
{
	for (size_t i = 0; i < c->g->nparams; i++)
		if (strcmp(c->params[i].d->name, name) == 0) {
			int t = (int)c->params[i].d->type;
			if (t != type && t != type2)
				break;
			return &c->params[i];
		}
	tlcm_error(c->g->id, "bug: node type %s asks for parameter '%s' it "
		   "does not declare with that type", c->t->name, name);
	return NULL;
}

int64_t tlcm_param_int(const tlcm_ctx_t *c, const char *name)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_INT, -1);
	return v ? v->i : 0;
}

double tlcm_param_float(const tlcm_ctx_t *c, const char *name)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_FLOAT, -1);
	return v ? v->f : 0;
}

bool tlcm_param_bool(const tlcm_ctx_t *c, const char *name)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_BOOL, -1);
	return v ? v->b : false;
}

const char *tlcm_param_str(const tlcm_ctx_t *c, const char *name)
{
	for (size_t i = 0; i < c->g->nparams; i++)
		if (strcmp(c->params[i].d->name, name) == 0)
			return c->params[i].text;
	tlcm_error(c->g->id, "bug: node type %s asks for undeclared "
		   "parameter '%s'", c->t->name, name);
	return NULL;
}

uint64_t tlcm_param_duration_ns(const tlcm_ctx_t *c, const char *name)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_DURATION, -1);
	return v ? v->u : 0;
}

uint64_t tlcm_param_size(const tlcm_ctx_t *c, const char *name)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_SIZE, -1);
	return v ? v->u : 0;
}

size_t tlcm_param_list(const tlcm_ctx_t *c, const char *name,
		       const char *const **items)
{
	const tlcm_pval_t *v = param(c, name, TLCM_P_LIST, -1);
	*items = v ? (const char *const *)v->list : NULL;
	return v ? v->nlist : 0;
}

void tlcm_set_trace(tlcm_ctx_t *c, uint64_t trace)
{
	c->trace = trace;
}

uint64_t tlcm_trace(const tlcm_ctx_t *c)
{
	return c->trace;
}

void tlcm_set_tick(tlcm_ctx_t *c, uint64_t period_ns)
{
	atomic_store(&c->tick_period, period_ns);
	atomic_store(&c->next_tick, period_ns == TLCM_TICK_OFF
					    ? UINT64_MAX
					    : tlcm_now_ns() + period_ns);
	if (c->s)
		pthread_cond_signal(&c->s->timer_cv);
}

bool tlcm_stopping(const tlcm_ctx_t *c)
{
	return atomic_load(&c->s->stopping);
}

void tlcm_node_log(const tlcm_ctx_t *c, int level, const char *fmt, ...)
{
	if (level > tlcm_log_level)
		return;
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	tlcm_log(level, c->g->id, "%s", msg);
}

static int bad_port(const tlcm_ctx_t *c, int port)
{
	if (port < 0 || (size_t)port >= c->nout) {
		tlcm_error(c->g->id, "bug: emit on output port %d, node type "
			   "%s has %zu", port, c->t->name, c->nout);
		return 1;
	}
	return 0;
}

static void run(tlcm_ctx_t *c);
static void release_node(tlcm_ctx_t *c);
static void mark_finished(tlcm_ctx_t *c);

/* Claim consumer c and run it on this thread; false when it is busy,
 * finished or lives on its own thread. */
static bool help(tlcm_ctx_t *c)
{
	if (c->own || child_mode)
		return false;
	int exp = ST_IDLE;
	if (!atomic_compare_exchange_strong(&c->run_state, &exp, ST_RUNNING)) {
		exp = ST_QUEUED;
		if (!atomic_compare_exchange_strong(&c->run_state, &exp,
						    ST_RUNNING))
			return false;
	}
	uint64_t h = helped_ns, t = tlcm_now_ns();
	run(c);
	helped_ns = h + (tlcm_now_ns() - t);
	return true;
}

/* Reserve on ring r (consumer dst) without ever parking while dst could
 * run: full `block` edges are worked off by helping. */
static void *reserve(tlcm_ctx_t *c, tlcm_ring_t *r, tlcm_ctx_t *dst,
		     size_t size, int *err)
{
	for (;;) {
		void *p = tlcm_ring_reserve(r, size, TLCM_RING_NOWAIT, err);
		if (p || *err != TLCM_EAGAIN ||
		    tlcm_ring_policy(r) != TLCM_EDGE_BLOCK)
			return p;
		if (atomic_load(&c->s->exiting)) {
			*err = TLCM_ECLOSED;
			return NULL;
		}
		if (!help(dst))
			tlcm_ring_wait_space(r, size, 1000000);
	}
}

static void copy_to(tlcm_ctx_t *c, out_port_t *op, size_t i, const void *data,
		    size_t size, const tlcm_msg_meta_t *meta, int *delivered)
{
	int err;
	tlcm_ring_t *r = op->rings[i];
	void *p = reserve(c, r, op->dst[i], size, &err);
	if (!p) { /* EAGAIN: the ring's policy dropped it and counted */
		if (err != TLCM_EAGAIN && err != TLCM_ECLOSED) {
			BUMP(c->st.dropped, 1);
			tlcm_warn(c->g->id, "message of %zu bytes lost: %s",
				  size, tlcm_strerror(err));
		}
		return;
	}
	memcpy(p, data, size);
	tlcm_ring_commit_defer(r, p, size, meta);
	(*delivered)++;
}

int tlcm_emit(tlcm_ctx_t *c, int port, const char type[4], const void *data,
	      size_t size)
{
	if (bad_port(c, port))
		return TLCM_EINVAL;
	out_port_t *op = &c->out[port];
	tlcm_msg_meta_t meta = {.trace = c->trace};
	memcpy(meta.type, type, 4);
	int delivered = 0;
	for (size_t i = 0; i < op->n; i++)
		copy_to(c, op, i, data, size, &meta, &delivered);
	BUMP(c->st.out, 1);
	return delivered || op->n == 0 ? 0 : TLCM_EAGAIN;
}

int tlcm_emit_msg(tlcm_ctx_t *c, int port, const tlcm_msg_t *m)
{
	if (bad_port(c, port))
		return TLCM_EINVAL;
	out_port_t *op = &c->out[port];
	tlcm_msg_meta_t meta = {.trace = m->trace};
	memcpy(meta.type, m->type, 4);
	int delivered = 0;
	for (size_t i = 0; i < op->n; i++)
		copy_to(c, op, i, tlcm_msg_data(m), m->size, &meta,
			&delivered);
	BUMP(c->st.out, 1);
	return delivered || op->n == 0 ? 0 : TLCM_EAGAIN;
}

int tlcm_emit_begin(tlcm_ctx_t *c, int port, tlcm_fbb_t *b, size_t max)
{
	if (bad_port(c, port))
		return TLCM_EINVAL;
	max = (max + 7) & ~(size_t)7;
	out_port_t *op = &c->out[port];
	c->emit_ring = NULL;
	if (op->n) {
		int err;
		void *p = reserve(c, op->rings[0], op->dst[0], max, &err);
		if (p) {
			c->emit_ring = op->rings[0];
			tlcm_fbb_init_fixed(b, p, max);
			return 0;
		}
		if (err != TLCM_EAGAIN && err != TLCM_ECLOSED)
			return err;
	}
	/* no first edge, or it dropped: build aside for the other edges */
	if (c->scratch_cap < max) {
		uint8_t *ns = realloc(c->scratch, max);
		if (!ns)
			return TLCM_ENOMEM;
		c->scratch = ns;
		c->scratch_cap = max;
	}
	tlcm_fbb_init_fixed(b, c->scratch, max);
	return 0;
}

/* Finish b, verify it when verify is given, and send it (emit_end). */
static int emit_finished(tlcm_ctx_t *c, int port, tlcm_fbb_t *b,
			 tlcm_fbb_ref_t root, const char identifier[4],
			 int (*verify)(const void *, size_t, const char **))
{
	if (bad_port(c, port))
		return TLCM_EINVAL;
	char ident[5] = {0};
	memcpy(ident, identifier, 4);
	size_t size;
	const void *buf = tlcm_fbb_finish(b, root, ident, &size);
	if (!buf)
		return tlcm_fbb_error(b);
	out_port_t *op = &c->out[port];
	tlcm_msg_meta_t meta = {.trace = c->trace};
	memcpy(meta.type, identifier, 4);
	const char *why;
	if (verify && verify(buf, size, &why)) {
		c->emit_ring = NULL; /* the reservation is abandoned */
		uint64_t n = ++c->unverifiable; /* the first 5, then 1 in 1000 */
		if (n <= 5 || n % 1000 == 0)
			tlcm_error(c->g->id, "output %s: the %s message built "
				   "does not verify, not sent (%" PRIu64 " so "
				   "far): %s", c->t->outputs[port].name, ident,
				   n, why);
		return TLCM_EINVAL;
	}
	if (verify)
		meta.flags = TLCM_MSG_VERIFIED;
	int delivered = 0;
	size_t first = 0;
	const void *src = buf;
	if (c->emit_ring) {
		tlcm_ring_commit_defer(c->emit_ring, buf, size, &meta);
		/* the committed copy sits at the slot start, unpublished and
		 * so still ours: copy the other edges from there */
		src = b->buf;
		delivered = 1;
		first = 1;
	} else if (op->n) {
		first = 1; /* the first edge refused it (the ring counted) */
	}
	for (size_t i = first; i < op->n; i++)
		copy_to(c, op, i, src, size, &meta, &delivered);
	c->emit_ring = NULL;
	BUMP(c->st.out, 1);
	return delivered || op->n == 0 ? 0 : TLCM_EAGAIN;
}

int tlcm_emit_end(tlcm_ctx_t *c, int port, tlcm_fbb_t *b,
		  tlcm_fbb_ref_t root, const char identifier[4])
{
	return emit_finished(c, port, b, root, identifier, NULL);
}

int tlcm_emit_end_checked(tlcm_ctx_t *c, int port, tlcm_fbb_t *b,
			  tlcm_fbb_ref_t root, const char identifier[4],
			  int (*verify)(const void *, size_t, const char **))
{
	if (!verify)
		return TLCM_EINVAL;
	return emit_finished(c, port, b, root, identifier, verify);
}

bool tlcm_msg_verified(const tlcm_ctx_t *c, const tlcm_msg_t *m)
{
	return c->in_trusted &&
	       (atomic_load_explicit(&m->flags, memory_order_relaxed) &
		TLCM_MSG_VERIFIED);
}

/* ---- scheduling ------------------------------------------------------------ */

static void push_ready(sched_t *s, tlcm_ctx_t *c)
{
	size_t idx = (size_t)(c - s->nodes);
	int r = c->rank;
	pthread_mutex_lock(&s->mu);
	if (s->qlen[r] == s->qcap[r]) {
		/* stale entries (nodes claimed by helping) can pile up */
		size_t nc = s->qcap[r] ? 2 * s->qcap[r] : 16;
		size_t *nq = malloc(nc * sizeof *nq);
		if (!nq) {
			pthread_mutex_unlock(&s->mu);
			tlcm_error(c->g->id, "out of memory queueing the node");
			return;
		}
		for (size_t i = 0; i < s->qlen[r]; i++)
			nq[i] = s->q[r][(s->qhead[r] + i) % s->qcap[r]];
		free(s->q[r]);
		s->q[r] = nq;
		s->qhead[r] = 0;
		s->qcap[r] = nc;
	}
	s->q[r][(s->qhead[r] + s->qlen[r]++) % s->qcap[r]] = idx;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Queue c unless it is queued or running already. */
static void wake(tlcm_ctx_t *c)
{
	if (child_mode) /* the parent's scheduler is not ours to touch */
		return;
	int exp = ST_IDLE;
	if (!atomic_compare_exchange_strong(&c->run_state, &exp, ST_QUEUED))
		return;
	if (c->own) {
		pthread_mutex_lock(&c->mu);
		c->ready = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
	} else {
		push_ready(c->s, c);
	}
}

static void wake_cb(void *arg)
{
	wake(arg);
}

static tlcm_ctx_t *pop_ready(sched_t *s)
{
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (atomic_load(&s->exiting)) {
			pthread_mutex_unlock(&s->mu);
			return NULL;
		}
		bool any = false;
		for (int r = s->nranks - 1; r >= 0; r--)
			if (s->qlen[r]) {
				size_t idx = s->q[r][s->qhead[r]];
				s->qhead[r] = (s->qhead[r] + 1) % s->qcap[r];
				s->qlen[r]--;
				int exp = ST_QUEUED;
				if (atomic_compare_exchange_strong(
					    &s->nodes[idx].run_state, &exp,
					    ST_RUNNING)) {
					pthread_mutex_unlock(&s->mu);
					return &s->nodes[idx];
				}
				any = true; /* stale: claimed elsewhere */
				break;
			}
		if (!any)
			pthread_cond_wait(&s->cv, &s->mu);
	}
}

static void set_failure(sched_t *s, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_failure(sched_t *s, int status, const char *fmt, ...)
{
	pthread_mutex_lock(&s->mu);
	if (!s->status) {
		s->status = status;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->why, sizeof s->why, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&s->mu);
}

static void request_stop(sched_t *s)
{
	if (atomic_exchange(&s->stopping, 1))
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].nin == 0)
			wake(&s->nodes[i]);
	pthread_cond_signal(&s->timer_cv);
}

static void finish(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	if (c->finished)
		return;
	if (c->t->eos) {
		int rc = c->t->eos(c, c->state);
		if (rc && rc != TLCM_ECLOSED) {
			BUMP(c->st.errors, 1);
			tlcm_error(c->g->id, "end of stream failed: %s",
				   tlcm_strerror(rc));
			set_failure(s, rc, "node '%s' failed at end of stream: "
				    "%s", c->g->id, tlcm_strerror(rc));
		}
	}
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			tlcm_ring_close(c->out[p].rings[i]);
	/* producers must not wait for us any more */
	for (size_t i = 0; i < c->nin; i++) {
		tlcm_ring_detach(c->in[i].ring);
		const tlcm_msg_t *ms[BATCH];
		size_t k;
		while ((k = tlcm_ring_peek_many(c->in[i].ring, ms, BATCH)))
			tlcm_ring_release(c->in[i].ring, k);
	}
	mark_finished(c);
}

static void mark_finished(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	c->finished = true;
	pthread_mutex_lock(&s->mu);
	if (atomic_fetch_add(&s->nfinished, 1) + 1 == s->n)
		pthread_cond_broadcast(&s->done_cv);
	pthread_mutex_unlock(&s->mu);
}

static int take_snapshot(tlcm_ctx_t *c, const char *reason)
{
	sched_t *s = c->s;
	if ((!s->store && !child_mode) || !c->t->snapshot)
		return TLCM_ENOTSUP;
	tlcm_fbb_t b;
	int rc = tlcm_fbb_init(&b, 0);
	if (!rc)
		rc = c->t->snapshot(c, c->state, &b);
	if (!rc && (b.in_table || b.used == 0))
		rc = b.err ? b.err : TLCM_EINVAL; /* not finished */
	if (!rc && child_mode) {
		/* the parent owns the store: send it [u32 size][bytes] */
		uint32_t n = (uint32_t)b.used;
		const uint8_t *p = b.buf + b.cap - b.used;
		if (write(child_snap_fd, &n, 4) != 4 ||
		    write(child_snap_fd, p, n) != (ssize_t)n)
			rc = TLCM_EIO;
		tlcm_fbb_fini(&b);
		return rc;
	}
	uint64_t v = 0;
	if (!rc)
		rc = tlcm_store_snapshot(s->store, c->g->id,
					 b.buf + b.cap - b.used, b.used, reason,
					 &v);
	if (rc)
		tlcm_error(c->g->id, "snapshot (%s) failed: %s", reason,
			   tlcm_strerror(rc));
	else
		tlcm_debug(c->g->id, "snapshot v%llu, %zu bytes (%s)",
			   (unsigned long long)v, b.used, reason);
	tlcm_fbb_fini(&b);
	return rc;
}

int tlcm_snapshot_now(tlcm_ctx_t *c, const char *reason)
{
	return take_snapshot(c, reason ? reason : "node");
}

/* Records live in the node's family under "rec/" + key: apart from the
 * "snap/..." versions, which the store lists and prunes by that prefix. */
#define REC_PREFIX "rec/"
#define REC_MAX_KEY 200

static bool records_ok(const tlcm_ctx_t *c)
{
	return !child_mode && !c->isolated && c->s->store;
}

tlcm_store_t *tlcm_graph_store(tlcm_ctx_t *c)
{
	return records_ok(c) ? c->s->store : NULL;
}

int tlcm_records_write(tlcm_ctx_t *c, const tlcm_record_op_t *ops, size_t n)
{
	if (!records_ok(c))
		return TLCM_ENOTSUP;
	char fname[128], key[sizeof REC_PREFIX + REC_MAX_KEY];
	snprintf(fname, sizeof fname, "node/%s", c->g->id);
	tlcm_batch_t *b = tlcm_batch_new();
	if (!b)
		return TLCM_ENOMEM;
	int rc = 0;
	for (size_t i = 0; !rc && i < n; i++) {
		if (!ops[i].klen || ops[i].klen > REC_MAX_KEY) {
			rc = TLCM_EINVAL;
			break;
		}
		memcpy(key, REC_PREFIX, 4);
		memcpy(key + 4, ops[i].key, ops[i].klen);
		size_t kl = 4 + ops[i].klen;
		rc = ops[i].val ? tlcm_batch_put(c->s->store, b, fname, key, kl,
						 ops[i].val, ops[i].vlen)
				: tlcm_batch_delete(c->s->store, b, fname, key,
						    kl);
	}
	if (!rc && n)
		rc = tlcm_store_write(c->s->store, b);
	tlcm_batch_free(b);
	return rc;
}

struct rec_scan {
	int (*fn)(void *, const void *, size_t, const void *, size_t);
	void *arg;
	void *copy; /* aligned copies of values */
	size_t cap;
};

/* Hand fn the key without "rec/" and the value 8-byte aligned (RocksDB's
 * are not, FlatBuffers verifiers insist). */
static int rec_strip(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	struct rec_scan *r = arg;
	static const uint64_t none; /* an aligned place for empty values */
	if (!vlen)
		val = &none;
	else if ((uintptr_t)val % 8) {
		if (vlen > r->cap) {
			free(r->copy);
			r->cap = vlen;
			if (!(r->copy = malloc(vlen))) {
				r->cap = 0;
				return TLCM_ENOMEM;
			}
		}
		val = memcpy(r->copy, val, vlen);
	}
	return r->fn(r->arg, (const char *)key + 4, klen - 4, val, vlen);
}

int tlcm_records_scan(tlcm_ctx_t *c, const char *prefix,
		      int (*fn)(void *arg, const void *key, size_t klen,
				const void *val, size_t vlen),
		      void *arg)
{
	if (!records_ok(c))
		return TLCM_ENOTSUP;
	size_t pl = strlen(prefix);
	if (pl > REC_MAX_KEY)
		return TLCM_EINVAL;
	char fname[128], key[sizeof REC_PREFIX + REC_MAX_KEY];
	snprintf(fname, sizeof fname, "node/%s", c->g->id);
	memcpy(key, REC_PREFIX, 4);
	memcpy(key + 4, prefix, pl);
	struct rec_scan r = {fn, arg, NULL, 0};
	int rc = tlcm_store_scan(c->s->store, fname, key, 4 + pl, rec_strip,
				 &r);
	free(r.copy);
	return rc;
}

int tlcm_bad_input(tlcm_ctx_t *c, uint64_t *count, const char *fmt, ...)
{
	uint64_t n = (*count)++;
	if (n < 5 || n % 1000 == 0) {
		char msg[320];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		tlcm_warn(c->g->id, "%s (%llu bad so far)", msg,
			  (unsigned long long)n + 1);
	}
	return TLCM_EBADMSG;
}

/* Device-unique ids. With a store: a hi/lo allocator, ID_BLOCK ids at a
 * time, each block's end written and synced to meta/"unique_id" before
 * any id of it is handed out, so a crash skips ids but never repeats one.
 * Without (or inside an isolated node's process): wall-clock microseconds
 * shifted left 12 bits, strictly increasing within the process; unique
 * across restarts unless the clock goes back. */
#define ID_BLOCK 65536u

static uint64_t clock_id(void)
{
	static _Atomic uint64_t last;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t v = ((uint64_t)ts.tv_sec * 1000000u +
		      (uint64_t)ts.tv_nsec / 1000u) << 12;
	uint64_t old = atomic_load(&last);
	uint64_t next;
	do
		next = v > old ? v : old + 1;
	while (!atomic_compare_exchange_weak(&last, &old, next));
	return next;
}

uint64_t tlcm_unique_id(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	if (child_mode || !s->store)
		return clock_id();
	pthread_mutex_lock(&s->id_mu);
	if (s->id_next == s->id_limit) {
		uint64_t start = s->id_limit;
		if (!start) { /* first use in this run */
			void *v = NULL;
			size_t len = 0;
			start = 1;
			if (!tlcm_store_get(s->store, "meta", "unique_id", 9,
					    &v, &len) && len == 8)
				memcpy(&start, v, 8);
			free(v);
		}
		uint64_t limit = start + ID_BLOCK;
		if (tlcm_store_put(s->store, "meta", "unique_id", 9, &limit,
				   8) || tlcm_store_sync(s->store)) {
			pthread_mutex_unlock(&s->id_mu);
			tlcm_warn(c->g->id, "cannot reserve ids in the store: "
				  "using clock-based ids");
			return clock_id();
		}
		s->id_next = start;
		s->id_limit = limit;
	}
	uint64_t id = s->id_next++;
	pthread_mutex_unlock(&s->id_mu);
	return id;
}

/* Restore version (0: the newest intact one, falling back to older ones
 * when a version is corrupt or refused by the node). */
static int restore(tlcm_ctx_t *c, uint64_t version)
{
	sched_t *s = c->s;
	if (!s->store || !c->t->restore || child_mode)
		return version ? TLCM_ENOTSUP : 0;
	tlcm_snap_info_t *l = NULL;
	size_t n = 0;
	int rc = tlcm_store_list(s->store, c->g->id, &l, &n);
	for (size_t i = n; !rc && i-- > 0;) {
		if (version && l[i].version != version)
			continue;
		void *d;
		size_t len;
		int lr = tlcm_store_load(s->store, c->g->id, l[i].version, &d,
					 &len, NULL);
		if (lr == 0) {
			lr = c->t->restore(c, c->state, d, len);
			free(d);
		}
		if (lr == 0) {
			tlcm_info(c->g->id, "restored state v%llu (%s)",
				  (unsigned long long)l[i].version, l[i].reason);
			free(l);
			return 0;
		}
		tlcm_warn(c->g->id, "snapshot v%llu unusable: %s%s",
			  (unsigned long long)l[i].version, tlcm_strerror(lr),
			  version ? "" : "; trying an older one");
		if (version)
			rc = lr;
	}
	free(l);
	if (version && !rc)
		rc = TLCM_ENOENT;
	return rc;
}

static int reinit(tlcm_ctx_t *c)
{
	if (c->t->fini)
		c->t->fini(c, c->state);
	memset(c->state, 0, c->t->state_size);
	atomic_store(&c->tick_period, TLCM_TICK_OFF);
	atomic_store(&c->next_tick, UINT64_MAX);
	int rc = c->t->init ? c->t->init(c, c->state) : 0;
	return rc ? rc : restore(c, 0);
}

/* ---- group snapshots across nodes (node.h) --------------------------------- */

/* Node `id` as a partner of c in a group snapshot, or an error. */
static int group_peer(tlcm_ctx_t *c, const char *id, tlcm_ctx_t **out)
{
	sched_t *s = c->s;
	if (child_mode || c->isolated || !s->store || !c->t->snapshot ||
	    !c->t->restore)
		return TLCM_ENOTSUP;
	for (size_t i = 0; id && i < s->n; i++) {
		tlcm_ctx_t *o = &s->nodes[i];
		if (strcmp(o->g->id, id))
			continue;
		if (o == c)
			return TLCM_EINVAL;
		if (o->isolated || !o->t->snapshot || !o->t->restore)
			return TLCM_ENOTSUP;
		if (atomic_load(&o->finished))
			return TLCM_ECLOSED;
		*out = o;
		return 0;
	}
	return TLCM_ENOENT;
}

/* Take node o for this thread without running it, as a worker would
 * (help()): false when it is running elsewhere. Give it back with
 * release_node(), which also queues it when work arrived meanwhile. */
static bool claim(tlcm_ctx_t *o)
{
	int exp = ST_IDLE;
	if (atomic_compare_exchange_strong(&o->run_state, &exp, ST_RUNNING))
		return true;
	exp = ST_QUEUED;
	return atomic_compare_exchange_strong(&o->run_state, &exp, ST_RUNNING);
}

/* c's state into b (initialised here; the caller frees it). */
static int build_snapshot(tlcm_ctx_t *c, tlcm_fbb_t *b)
{
	int rc = tlcm_fbb_init(b, 0);
	if (!rc)
		rc = c->t->snapshot(c, c->state, b);
	if (!rc && (b->in_table || b->used == 0))
		rc = b->err ? b->err : TLCM_EINVAL; /* not finished */
	return rc;
}

int tlcm_snapshot_group(tlcm_ctx_t *c, const char *other, const char *reason,
			uint64_t *version, uint64_t *other_version)
{
	tlcm_ctx_t *o = NULL;
	int rc = group_peer(c, other, &o);
	if (rc)
		return rc;
	if (!claim(o))
		return TLCM_EAGAIN;
	tlcm_fbb_t b[2];
	rc = build_snapshot(c, &b[0]);
	int rc2 = build_snapshot(o, &b[1]);
	release_node(o);
	rc = rc ? rc : rc2;
	uint64_t v[2] = {0, 0};
	if (!rc) {
		const char *nodes[2] = {c->g->id, o->g->id};
		const void *data[2] = {b[0].buf + b[0].cap - b[0].used,
				       b[1].buf + b[1].cap - b[1].used};
		size_t lens[2] = {b[0].used, b[1].used};
		rc = tlcm_store_snapshot_group(c->s->store, 2, nodes, data,
					       lens, reason, v);
	}
	tlcm_fbb_fini(&b[0]);
	tlcm_fbb_fini(&b[1]);
	if (rc) {
		tlcm_error(c->g->id, "group snapshot with '%s' (%s) failed: "
			   "%s", other, reason, tlcm_strerror(rc));
		return rc;
	}
	tlcm_debug(c->g->id, "group snapshot v%llu, '%s' v%llu (%s)",
		   (unsigned long long)v[0], other, (unsigned long long)v[1],
		   reason);
	if (version)
		*version = v[0];
	if (other_version)
		*other_version = v[1];
	return 0;
}

int tlcm_rollback_group(tlcm_ctx_t *c, uint64_t version)
{
	sched_t *s = c->s;
	if (child_mode || c->isolated || !s->store)
		return TLCM_ENOTSUP;
	tlcm_snap_info_t me, *all = NULL;
	size_t n = 0;
	void *d = NULL;
	size_t len;
	int rc = tlcm_store_load(s->store, c->g->id, version, &d, &len, &me);
	free(d);
	if (!rc && !me.group)
		rc = TLCM_EINVAL; /* not a group snapshot */
	if (!rc)
		rc = tlcm_store_list(s->store, NULL, &all, &n);
	/* the other members, claimed: none may run while we restore */
	tlcm_ctx_t *peers[8];
	uint64_t pv[8];
	size_t np = 0;
	for (size_t i = 0; !rc && i < n; i++) {
		if (all[i].group != me.group || !strcmp(all[i].node, c->g->id))
			continue;
		tlcm_ctx_t *o = NULL;
		rc = np == 8 ? TLCM_ETOOBIG : group_peer(c, all[i].node, &o);
		if (!rc && !claim(o))
			rc = TLCM_EAGAIN;
		if (rc)
			break;
		peers[np] = o;
		pv[np++] = all[i].version;
		/* what we sent o must be consumed before o goes back */
		for (size_t p = 0; p < c->nout && !rc; p++)
			for (size_t e = 0; e < c->out[p].n; e++)
				if (c->out[p].dst[e] == o) {
					tlcm_ring_publish(c->out[p].rings[e]);
					if (tlcm_ring_readable(
						    c->out[p].rings[e]))
						rc = TLCM_EAGAIN;
				}
	}
	free(all);
	for (size_t i = 0; !rc && i < np; i++)
		rc = restore(peers[i], pv[i]);
	uint64_t nv = 0;
	if (!rc)
		rc = tlcm_store_rollback(s->store, c->g->id, version, &nv);
	for (size_t i = 0; i < np; i++)
		release_node(peers[i]);
	if (rc == TLCM_EAGAIN)
		return rc;
	if (rc)
		tlcm_error(c->g->id, "group rollback to v%llu failed: %s",
			   (unsigned long long)version, tlcm_strerror(rc));
	else
		tlcm_info(c->g->id, "group rolled back to v%llu (now v%llu, "
			  "%zu other node%s restored)",
			  (unsigned long long)version, (unsigned long long)nv,
			  np, np == 1 ? "" : "s");
	return rc;
}

/* A callback failed with rc: apply the node's on_error policy. Returns
 * false when the node must stop. */
static bool on_error(tlcm_ctx_t *c, int rc, const char *what)
{
	sched_t *s = c->s;
	uint64_t n = GET(c->st.errors);
	BUMP(c->st.errors, 1);
	atomic_store(&c->last_error, tlcm_strerror(rc));
	if (rc == TLCM_EBADMSG) {
		/* the message is at fault, not the node: drop it whatever
		 * the policy (the node logged which one); say so now and
		 * then, not for every one of a flood */
		if (n < 5 || n % 1000 == 0)
			tlcm_error(c->g->id, "%s: bad message skipped (%llu "
				   "errors so far)", what,
				   (unsigned long long)n + 1);
		return true;
	}
	tlcm_error(c->g->id, "%s failed: %s", what, tlcm_strerror(rc));
	switch (c->g->on_error) {
	case TLCM_ON_ERROR_SKIP:
		return true;
	case TLCM_ON_ERROR_RESTART: {
		uint64_t now = tlcm_now_ns();
		if (now - c->restart_window_start > 60000000000ull) {
			c->restart_window_start = now;
			c->restarts_window = 0;
		}
		if (++c->restarts_window <= RESTART_LIMIT) {
			BUMP(c->st.restarts, 1);
			int ir = reinit(c);
			if (ir == 0) {
				tlcm_warn(c->g->id, "restarted (%u in the last "
					  "minute)", c->restarts_window);
				return true;
			}
			rc = ir;
			tlcm_error(c->g->id, "restart failed: %s",
				   tlcm_strerror(ir));
		} else {
			tlcm_error(c->g->id, "more than %d restarts in a "
				   "minute: giving up", RESTART_LIMIT);
		}
	} /* fall through */
	default:
		set_failure(s, rc, "node '%s' (type %s): %s failed: %s",
			    c->g->id, c->t->name, what, tlcm_strerror(rc));
		request_stop(s);
		return false;
	}
}

static void control(tlcm_ctx_t *c, const tlcm_msg_t *m)
{
	const char *why;
	const void *buf = tlcm_msg_data(m);
	if (tlcm_Control_verify_as_root(buf, m->size, &why)) {
		tlcm_warn(c->g->id, "control message rejected: %s", why);
		return;
	}
	tlcm_Control_table_t ct = tlcm_Control_as_root(buf);
	const char *name = tlcm_Control_name(ct);
	const char *value = tlcm_Control_value(ct);
	switch (tlcm_Control_op(ct)) {
	case tlcm_ControlOp_SetParam: {
		size_t i;
		for (i = 0; i < c->g->nparams; i++)
			if (name && !strcmp(c->params[i].d->name, name))
				break;
		if (i == c->g->nparams || !value) {
			tlcm_warn(c->g->id, "control: no parameter '%s'",
				  name ? name : "(none)");
			return;
		}
		if (!(c->params[i].d->flags & TLCM_PARAM_RUNTIME)) {
			tlcm_warn(c->g->id, "control: parameter '%s' cannot "
				  "change while running", name);
			return;
		}
		tlcm_pval_t nv = {0};
		char err[300];
		if (tlcm_param_parse(c->params[i].d, value, &nv, err,
				     sizeof err)) {
			tlcm_warn(c->g->id, "control: %s: %s", name,
				  c->params[i].d->type == TLCM_P_SECRET ? "***"
									: err);
			tlcm_pval_clear(&nv);
			return;
		}
		nv.given = true;
		tlcm_pval_clear(&c->params[i]);
		c->params[i] = nv;
		tlcm_info(c->g->id, "parameter %s = %s", name,
			  tlcm_param_display(&nv));
		if (c->t->param_changed) {
			int rc = c->t->param_changed(c, c->state, name);
			if (rc)
				on_error(c, rc, "param_changed");
		}
		return;
	}
	case tlcm_ControlOp_Reload: {
		int rc = reinit(c);
		if (rc)
			on_error(c, rc, "reload");
		else
			tlcm_info(c->g->id, "reloaded");
		return;
	}
	case tlcm_ControlOp_Snapshot:
	case tlcm_ControlOp_Rollback: {
		bool snap = tlcm_Control_op(ct) == tlcm_ControlOp_Snapshot;
		if (!c->s->store || !c->t->snapshot || !c->t->restore) {
			tlcm_warn(c->g->id, "control: %s needs a state store and "
				  "a node type that snapshots", snap
					  ? "snapshot" : "rollback");
			return;
		}
		if (snap) {
			take_snapshot(c, "control");
			return;
		}
		uint64_t v = tlcm_Control_version(ct), nv = 0;
		int rc = restore(c, v);
		if (!rc)
			rc = tlcm_store_rollback(c->s->store, c->g->id, v, &nv);
		if (rc)
			tlcm_warn(c->g->id, "control: rollback to v%llu failed: "
				  "%s", (unsigned long long)v,
				  tlcm_strerror(rc));
		else
			tlcm_info(c->g->id, "rolled back to v%llu (now v%llu)",
				  (unsigned long long)v,
				  (unsigned long long)nv);
		return;
	}
	default:
		tlcm_warn(c->g->id, "control: unknown operation %d",
			  (int)tlcm_Control_op(ct));
		return;
	}
}

/* Room on every `block` output for a typical message? Returns the first
 * ring without it. */
static tlcm_ring_t *gated(tlcm_ctx_t *c, size_t *need)
{
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++) {
			tlcm_ring_t *r = c->out[p].rings[i];
			if (tlcm_ring_policy(r) != TLCM_EDGE_BLOCK)
				continue;
			size_t n = tlcm_ring_capacity(r) / 8;
			if (n > 16384)
				n = 16384;
			if (!tlcm_ring_writable(r, n)) {
				*need = 2 * (n + TLCM_MSG_HDR); /* bytes */
				return r;
			}
		}
	return NULL;
}

static void publish_all(tlcm_ctx_t *c)
{
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			tlcm_ring_publish(c->out[p].rings[i]);
}

static bool source(const tlcm_ctx_t *c)
{
	return c->g->nin == 0;
}

/* Whether the end of its inputs ends node c. A node whose connected
 * inputs are all feedback or control edges and that has a tick — a
 * source that also listens, e.g. eval.scenario scoring the answers to
 * what it played — ends only when its tick returns TLCM_ECLOSED. */
static bool ends_with_inputs(const tlcm_ctx_t *c)
{
	if (!c->nin)
		return false;
	if (!c->t->tick)
		return true;
	for (size_t k = 0; k < c->nin; k++)
		if (!c->in[k].optional_for_eos)
			return true;
	return false;
}

/* ---- idle barrier (node.h) ----------------------------------------------- */

/* One look at the graph for tlcm_graph_idle(): false when a node other
 * than c is queued or running, or an edge not into c holds a message
 * (published and not yet released: peeked ones count). Else *mark gets
 * the sum of every edge's committed and consumed counters. Ring figures
 * are read from the shared segment only (tlcm_ring_stats), never through
 * the consumer's private view, so no other thread's ring state is
 * touched; isolated nodes (always RUNNING here: their child runs them)
 * are judged by their rings alone. */
static bool quiet_look(const tlcm_ctx_t *c, uint64_t *mark)
{
	sched_t *s = c->s;
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *o = &s->nodes[i];
		if (o == c || o->isolated || atomic_load(&o->finished))
			continue;
		if (atomic_load(&o->run_state) != ST_IDLE)
			return false;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < s->g->nedges; i++) {
		const tlcm_ctx_t *to = &s->nodes[s->g->edges[i].to];
		tlcm_ring_stats_t st;
		tlcm_ring_stats(s->rings[i], &st);
		sum += st.committed + st.consumed;
		/* a finished consumer drained its inputs and refuses more */
		if (st.used && to != c && !atomic_load(&to->finished))
			return false;
	}
	*mark = sum;
	return true;
}

bool tlcm_inputs_empty(tlcm_ctx_t *c)
{
	for (size_t k = 0; k < c->nin; k++)
		if (tlcm_ring_readable(c->in[k].ring) &&
		    !tlcm_ring_eos(c->in[k].ring))
			return false;
	return true;
}

/* Two looks, equal counters: every counter only grows, so equal sums
 * mean no edge saw a publish or a release between the two looks' reads
 * of it. A node that ran in between would have left such a trace (its
 * input released, its output published) or still be running at the
 * second look: publishes happen while the producer runs, and a consumer
 * releases only what it has processed. So there was a moment with
 * nothing in flight. */
bool tlcm_graph_idle(tlcm_ctx_t *c)
{
	if (child_mode) /* the other nodes are not visible from here */
		return false;
	publish_all(c); /* what the caller emitted so far must count */
	uint64_t m1, m2;
	return quiet_look(c, &m1) && quiet_look(c, &m2) && m1 == m2;
}

/* Wall time since t0 less what this thread spent running other nodes
 * since helped_ns was h0: the node's own share. */
static uint64_t own_time(uint64_t t0, uint64_t h0)
{
	uint64_t d = tlcm_now_ns() - t0, h = helped_ns - h0;
	return d > h ? d - h : 0;
}

/* Run the consumer of c's output ring r on this thread (see help());
 * false when it is busy or not c's. */
static bool help_consumer(tlcm_ctx_t *c, tlcm_ring_t *r)
{
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			if (c->out[p].rings[i] == r)
				return help(c->out[p].dst[i]);
	return false;
}

/* One scheduling round of node c (owned by the caller). */
static void run(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	if (c->finished)
		return;
	if (source(c) && atomic_load(&s->stopping)) {
		finish(c);
		return;
	}
	size_t need;
	tlcm_ring_t *full = gated(c, &need);
	/* Work the full edge off on this thread first: when every worker is
	 * busy (one producer waiting for room, one helping us), nobody else
	 * would run the consumer, and giving up here would just be called
	 * again by the helper, round after round. Block edges form no cycle,
	 * so this recursion ends. */
	for (int tries = 0; full && tries < 4 && help_consumer(c, full);
	     tries++)
		full = gated(c, &need);
	if (full) {
		atomic_store(&c->run_state, ST_IDLE);
		if (tlcm_ring_arm_space(full, need))
			wake(c);
		return;
	}
	bool alive = true;
	uint64_t period = atomic_load(&c->tick_period);
	if (c->t->tick && (atomic_exchange(&c->tick_due, 0) || period == 0)) {
		int n = period == 0 ? SOURCE_TICKS : 1;
		uint64_t tt = tlcm_now_ns(), th = helped_ns;
		for (int i = 0; i < n && alive; i++) {
			int rc = c->t->tick(c, c->state, tlcm_now_ns());
			if (rc == TLCM_ECLOSED) {
				alive = false;
				BUMP(c->st.busy_ns, own_time(tt, th));
				publish_all(c);
				finish(c);
				return;
			} else if (rc) {
				alive = on_error(c, rc, "tick");
			}
			if (period == 0 && i % 16 == 15 && gated(c, &need))
				break;
		}
		BUMP(c->st.busy_ns, own_time(tt, th));
	}
	int budget = BUDGET;
	bool all_eos = ends_with_inputs(c);
	uint64_t t0 = c->nin ? tlcm_now_ns() : 0, h0 = helped_ns;
	for (size_t k = 0; k < c->nin && alive; k++) {
		in_edge_t *e = &c->in[k];
		while (budget > 0 && alive) {
			const tlcm_msg_t *ms[BATCH];
			size_t got = tlcm_ring_peek_many(
				e->ring, ms, budget < BATCH ? (size_t)budget
							    : BATCH);
			if (!got)
				break;
			for (size_t i = 0; i < got && alive; i++) {
				BUMP(c->st.in, 1);
				if (e->port == c->g->nin) {
					control(c, ms[i]);
					continue;
				}
				if (!c->t->process)
					continue;
				c->trace = ms[i]->trace;
				c->in_trusted = e->trusted;
				int rc = c->t->process(c, c->state, (int)e->port,
						       ms[i]);
				c->in_trusted = false;
				if (rc == TLCM_ECLOSED) {
					alive = false;
				} else if (rc) {
					alive = on_error(c, rc, "process");
				}
			}
			tlcm_ring_release(e->ring, got);
			budget -= (int)got;
		}
		if (!e->eos && tlcm_ring_eos(e->ring))
			e->eos = true;
		if (!e->eos && !e->optional_for_eos)
			all_eos = false;
	}
	publish_all(c);
	if (budget < BUDGET) { /* processed messages: time them */
		uint64_t busy = own_time(t0, h0);
		BUMP(c->st.busy_ns, busy);
		uint64_t per = busy / (uint64_t)(BUDGET - budget);
		unsigned b = per ? 64 - (unsigned)__builtin_clzll(per) : 0;
		BUMP(c->st.hist[b < 48 ? b : 47], (uint64_t)(BUDGET - budget));
		BUMP(c->st.batches, 1);
	}
	if (!alive || all_eos) {
		finish(c);
		return;
	}
	release_node(c);
}

/* Give up ownership of c, then look for more work (arming the inputs so a
 * producer's next publish wakes it). */
static void release_node(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	/* an input at end of stream stays readable (closed): arming it
	 * would re-queue the node forever while its other inputs wait.
	 * Which ones are done is read while we still own the node. */
	uint64_t done = 0;
	for (size_t k = 0; k < c->nin && k < 64; k++)
		if (c->in[k].eos)
			done |= 1ull << k;
	atomic_store(&c->run_state, ST_IDLE);
	bool more = atomic_load(&c->tick_due) ||
		    (c->t->tick && atomic_load(&c->tick_period) == 0) ||
		    (source(c) && atomic_load(&s->stopping));
	for (size_t k = 0; k < c->nin && !more; k++)
		more = !(k < 64 && (done >> k & 1)) &&
		       tlcm_ring_arm(c->in[k].ring);
	if (more)
		wake(c);
}

/* ---- process isolation ---------------------------------------------------- */

static void child_on_term(int sig)
{
	(void)sig;
	child_stop = 1;
}

/* The node's whole life in its child process: init, restore from the
 * snapshot the parent handed over, then process/tick until end of stream
 * (or SIGTERM for a source). Each batch's outputs are published before its
 * inputs are released, so a crash loses nothing: unreleased input comes
 * again to the next child (at least once; the batch in flight may be seen
 * twice downstream). */
static _Noreturn void child_main(tlcm_ctx_t *c, int fd, const void *snap,
				  size_t slen)
{
	child_mode = true;
	child_snap_fd = fd;
	/* our copies of the ring handles are the parent's, possibly stale
	 * after an earlier child used them: take the positions from the
	 * segments */
	for (size_t i = 0; i < c->nin; i++)
		tlcm_ring_resync(c->in[i].ring);
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			tlcm_ring_resync(c->out[p].rings[i]);
	signal(SIGTERM, child_on_term);
	signal(SIGINT, SIG_IGN); /* the parent decides */
	int rc = c->t->init ? c->t->init(c, c->state) : 0;
	if (rc) {
		tlcm_error(c->g->id, "init failed in the child: %s",
			   tlcm_strerror(rc));
		_exit(2);
	}
	if (snap && c->t->restore && (rc = c->t->restore(c, c->state, snap,
							 slen)))
		tlcm_warn(c->g->id, "state rejected (%s): starting fresh",
			  tlcm_strerror(rc));
	uint64_t next = tlcm_now_ns();
	bool alive = true;
	while (alive) {
		bool did = false;
		uint64_t period = atomic_load(&c->tick_period);
		if (source(c) && child_stop)
			break;
		if (c->t->tick && period != TLCM_TICK_OFF &&
		    (period == 0 || tlcm_now_ns() >= next)) {
			next = tlcm_now_ns() + period;
			rc = c->t->tick(c, c->state, tlcm_now_ns());
			publish_all(c);
			did = true;
			if (rc == TLCM_ECLOSED)
				break;
			if (rc && !on_error(c, rc, "tick"))
				_exit(4);
		}
		bool all_eos = ends_with_inputs(c);
		for (size_t k = 0; k < c->nin && alive; k++) {
			in_edge_t *e = &c->in[k];
			const tlcm_msg_t *ms[BATCH];
			size_t got = tlcm_ring_peek_many(e->ring, ms, BATCH);
			for (size_t i = 0; i < got && alive; i++) {
				if (e->port == c->g->nin) {
					control(c, ms[i]);
					continue;
				}
				c->trace = ms[i]->trace;
				c->in_trusted = false; /* isolated: none */
				rc = c->t->process ? c->t->process(
					c, c->state, (int)e->port, ms[i]) : 0;
				if (rc == TLCM_ECLOSED)
					alive = false;
				else if (rc && !on_error(c, rc, "process"))
					_exit(4);
			}
			publish_all(c); /* outputs first, then give input back */
			tlcm_ring_release(e->ring, got);
			did |= got > 0;
			if (!e->eos && tlcm_ring_eos(e->ring))
				e->eos = true;
			if (!e->eos && !e->optional_for_eos)
				all_eos = false;
		}
		if (all_eos)
			break;
		if (!did) {
			int64_t wait = 20000000;
			if (c->t->tick && period != TLCM_TICK_OFF && period) {
				int64_t left = (int64_t)(next - tlcm_now_ns());
				if (left < wait)
					wait = left > 0 ? left : 0;
			}
			if (c->nin)
				tlcm_ring_wait_data(c->in[0].ring, wait);
			else if (wait)
				usleep((useconds_t)(wait / 1000));
		}
	}
	if (c->t->eos && (rc = c->t->eos(c, c->state)) && rc != TLCM_ECLOSED)
		tlcm_error(c->g->id, "end of stream failed: %s",
			   tlcm_strerror(rc));
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			tlcm_ring_close(c->out[p].rings[i]);
	for (size_t i = 0; i < c->nin; i++)
		tlcm_ring_detach(c->in[i].ring);
	if (c->t->snapshot)
		take_snapshot(c, "shutdown");
	if (c->t->fini)
		c->t->fini(c, c->state);
	_exit(0);
}

/* Consumers of an isolated node's outputs live in this process and are
 * not woken by the child's publishes: look every 10 ms. */
static void doorbell(tlcm_ctx_t *c)
{
	for (size_t p = 0; p < c->nout; p++)
		for (size_t i = 0; i < c->out[p].n; i++)
			if (tlcm_ring_arm(c->out[p].rings[i]))
				wake(c->out[p].dst[i]);
}

/* ---- zygotes --------------------------------------------------------------
 *
 * An isolated node's processes are not forked from the graph process,
 * which by then runs workers, RocksDB and NNG threads: a child forked while
 * another thread holds an allocator lock can deadlock (sanitizer
 * allocators are not fork-safe at all). Instead, before any thread starts,
 * each isolated node gets a zygote: a single-threaded copy of the set-up
 * graph whose only job is to fork that node's processes on request and
 * report how they end. Commands on the stream socket, one byte each:
 *
 *   parent -> zygote   'S' u32 len, len bytes   start a process with this
 *                                               snapshot (len 0: none)
 *                      'T' / 'K'                SIGTERM / SIGKILL it
 *                      end of file              kill it, exit
 *   zygote -> parent   'P' i32 pid              started
 *                      'E' i32 errno            fork failed
 *                      'X' i32 wait status      it ended (reaped)
 *
 * The zygote signals only its own unreaped child, so a recycled pid is
 * never hit. Snapshots go from the node's process straight to the parent
 * over a pipe made before the zygote; the zygote holds the write end. */

static bool read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t k = read(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

static bool write_full(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

static bool send_word(int fd, char tag, int32_t v)
{
	uint8_t m[5] = {(uint8_t)tag};
	memcpy(m + 1, &v, 4);
	return write_full(fd, m, sizeof m);
}

static bool recv_word(int fd, char *tag, int32_t *v)
{
	uint8_t m[5];
	if (!read_full(fd, m, sizeof m))
		return false;
	*tag = (char)m[0];
	memcpy(v, m + 1, 4);
	return true;
}

static _Noreturn void zygote_main(tlcm_ctx_t *c, int fd, pid_t graph)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != graph)
		_exit(0); /* the graph process is already gone */
	signal(SIGINT, SIG_IGN); /* a terminal's ^C is the graph's to handle */
	signal(SIGTERM, SIG_IGN);
	pid_t child = 0;
	for (;;) {
		struct pollfd pf = {fd, POLLIN, 0};
		int ready = poll(&pf, 1, child ? 10 : -1);
		int st;
		if (child && waitpid(child, &st, WNOHANG) == child) {
			child = 0;
			if (!send_word(fd, 'X', st))
				_exit(0);
		}
		if (ready <= 0)
			continue;
		uint8_t cmd;
		if (!read_full(fd, &cmd, 1)) { /* the graph is done with us */
			if (child) {
				kill(child, SIGKILL);
				waitpid(child, &st, 0);
			}
			_exit(0);
		}
		if (cmd == 'T' || cmd == 'K') {
			if (child)
				kill(child, cmd == 'T' ? SIGTERM : SIGKILL);
			continue;
		}
		uint32_t len;
		if (cmd != 'S' || child || !read_full(fd, &len, 4))
			_exit(3); /* protocol error: the supervisor sees EOF */
		void *snap = len ? malloc(len) : NULL;
		if ((len && !snap) || (len && !read_full(fd, snap, len)))
			_exit(3);
		pid_t pid = fork();
		if (pid == 0) {
			close(fd);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			child_main(c, child_snap_fd, snap, len);
		}
		int err = errno;
		free(snap);
		if (pid > 0)
			child = pid;
		if (!send_word(fd, pid > 0 ? 'P' : 'E', pid > 0 ? pid : err))
			_exit(0);
	}
}

/* Start every isolated node's zygote. Called before the graph process
 * starts any thread. */
static int zygotes_start(sched_t *s, char *why, size_t cap)
{
	pid_t graph = getpid();
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		if (!c->isolated)
			continue;
		int sv[2], pfd[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			snprintf(why, cap, "node '%s': socketpair: %s",
				 c->g->id, strerror(errno));
			return TLCM_EIO;
		}
		if (pipe2(pfd, O_CLOEXEC)) {
			snprintf(why, cap, "node '%s': pipe: %s", c->g->id,
				 strerror(errno));
			close(sv[0]);
			close(sv[1]);
			return TLCM_EIO;
		}
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			/* nothing of the other zygotes may stay open here, or
			 * they would not see the graph hang up */
			for (size_t j = 0; j < i; j++)
				if (s->nodes[j].isolated) {
					close(s->nodes[j].zygote_fd);
					close(s->nodes[j].snap_fd);
				}
			close(sv[0]);
			close(pfd[0]);
			child_snap_fd = pfd[1];
			zygote_main(c, sv[1], graph);
		}
		int err = errno;
		close(sv[1]);
		close(pfd[1]);
		if (pid < 0) {
			close(sv[0]);
			close(pfd[0]);
			snprintf(why, cap, "node '%s': fork: %s", c->g->id,
				 strerror(err));
			return TLCM_EIO;
		}
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
		c->zygote_pid = pid;
		c->zygote_fd = sv[0];
		c->snap_fd = pfd[0];
	}
	return 0;
}

/* Hang up on the zygotes (they kill what still runs) and reap them. */
static void zygotes_stop(sched_t *s)
{
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		if (!c->zygote_pid)
			continue;
		close(c->zygote_fd);
		close(c->snap_fd);
		while (waitpid(c->zygote_pid, NULL, 0) < 0 && errno == EINTR)
			;
		c->zygote_pid = 0;
	}
}

/* Take the snapshot frames that arrived; false when the pipe failed. */
static bool read_snapshots(tlcm_ctx_t *c, uint8_t **buf, size_t *len,
			   size_t *cap)
{
	for (;;) {
		if (*cap - *len < 65536) {
			size_t nc = *cap ? *cap * 2 : 131072;
			uint8_t *nb = realloc(*buf, nc);
			if (!nb)
				return false;
			*buf = nb;
			*cap = nc;
		}
		ssize_t k = read(c->snap_fd, *buf + *len, *cap - *len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return true;
		if (k <= 0)
			return false;
		*len += (size_t)k;
		size_t off = 0;
		while (*len - off >= 4) {
			uint32_t n;
			memcpy(&n, *buf + off, 4);
			if (*len - off - 4 < n)
				break;
			if (c->s->store &&
			    tlcm_store_snapshot(c->s->store, c->g->id,
						*buf + off + 4, n, "child", NULL))
				tlcm_error(c->g->id, "cannot store the child's "
					   "snapshot");
			off += 4 + n;
		}
		memmove(*buf, *buf + off, *len - off);
		*len -= off;
	}
}

/* Ask the zygote for a process; its pid, or -1 (failure set). */
static pid_t spawn(tlcm_ctx_t *c)
{
	sched_t *s = c->s;
	void *snap = NULL;
	size_t slen = 0;
	if (s->store && c->t->restore)
		tlcm_store_load(s->store, c->g->id, 0, &snap, &slen, NULL);
	uint8_t head[5] = {'S'};
	uint32_t n = (uint32_t)slen;
	memcpy(head + 1, &n, 4);
	bool ok = write_full(c->zygote_fd, head, 5) &&
		  write_full(c->zygote_fd, snap, slen);
	free(snap);
	char tag = 0;
	int32_t v = 0;
	if (!ok || !recv_word(c->zygote_fd, &tag, &v) ||
	    (tag != 'P' && tag != 'E')) {
		set_failure(s, TLCM_EIO, "node '%s': its zygote process is "
			    "gone", c->g->id);
		return -1;
	}
	if (tag == 'E') {
		set_failure(s, TLCM_EIO, "node '%s': fork: %s", c->g->id,
			    strerror(v));
		return -1;
	}
	tlcm_info(c->g->id, "running in process %d%s", (int)v,
		  slen ? " (state restored)" : "");
	return v;
}

/* One thread per isolated node: start its process, store its snapshots,
 * wake its consumers, restart it when it dies (at most RESTART_LIMIT
 * times a minute), and mark the node finished when it ends. */
static void *supervise(void *arg)
{
	tlcm_ctx_t *c = arg;
	sched_t *s = c->s;
	uint64_t window = tlcm_now_ns();
	unsigned in_window = 0;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	bool given_up = true; /* until it ends well or the graph exits */
	for (;;) {
		pid_t pid = spawn(c);
		if (pid < 0)
			break;
		atomic_store(&c->pid, pid);
		bool signalled = false, ended = false, lost = false;
		int32_t st = 0;
		while (!ended && !lost) {
			struct pollfd pf[2] = {{c->zygote_fd, POLLIN, 0},
					       {c->snap_fd, POLLIN, 0}};
			if (poll(pf, 2, 10) > 0) {
				if (pf[1].revents &&
				    !read_snapshots(c, &buf, &len, &cap))
					lost = true;
				char tag;
				if (pf[0].revents) {
					if (recv_word(c->zygote_fd, &tag, &st) &&
					    tag == 'X')
						ended = true;
					else
						lost = true;
				}
			}
			doorbell(c);
			const char *cmd = NULL;
			if (atomic_load(&s->exiting))
				cmd = "K";
			else if (!signalled && source(c) &&
				 atomic_load(&s->stopping))
				cmd = "T";
			if (cmd && !signalled) {
				signalled = true;
				if (!write_full(c->zygote_fd, cmd, 1))
					lost = true;
			}
		}
		/* all it wrote is in the pipe now; a frame cut short by its
		 * death is dropped, its predecessor stays the latest */
		if (!lost && !read_snapshots(c, &buf, &len, &cap))
			lost = true;
		len = 0;
		atomic_store(&c->pid, 0);
		doorbell(c);
		if (lost) {
			set_failure(s, TLCM_EIO, "node '%s': its zygote process "
				    "is gone", c->g->id);
			break;
		}
		if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
		    atomic_load(&s->exiting)) {
			given_up = false;
			break;
		}
		BUMP(c->st.errors, 1);
		atomic_store(&c->last_error, "child process died");
		if (WIFSIGNALED(st))
			tlcm_error(c->g->id, "process %d killed by signal %d",
				   (int)pid, WTERMSIG(st));
		else
			tlcm_error(c->g->id, "process %d exited with status %d",
				   (int)pid, WEXITSTATUS(st));
		uint64_t now = tlcm_now_ns();
		if (now - window > RESTART_WINDOW_NS) {
			window = now;
			in_window = 0;
		}
		if (++in_window > RESTART_LIMIT) {
			tlcm_error(c->g->id, "more than %d restarts in a minute: "
				   "stopping the node", RESTART_LIMIT);
			set_failure(s, TLCM_EIO, "node '%s' (type %s) kept "
				    "crashing in its process; stopped after %d "
				    "restarts", c->g->id, c->t->name,
				    RESTART_LIMIT);
			break;
		}
		BUMP(c->st.restarts, 1);
		tlcm_warn(c->g->id, "restarting from its last snapshot");
	}
	free(buf);
	if (given_up) {
		/* given up: the graph runs on without this node; its
		 * consumers see end of stream, its producers stop waiting */
		for (size_t p = 0; p < c->nout; p++)
			for (size_t i = 0; i < c->out[p].n; i++)
				tlcm_ring_close(c->out[p].rings[i]);
		for (size_t i = 0; i < c->nin; i++)
			tlcm_ring_detach(c->in[i].ring);
		doorbell(c);
	}
	mark_finished(c);
	return NULL;
}

static void *worker(void *arg)
{
	sched_t *s = arg;
	tlcm_ctx_t *c;
	while ((c = pop_ready(s)))
		run(c);
	return NULL;
}

static void *own_thread(void *arg)
{
	tlcm_ctx_t *c = arg;
	sched_t *s = c->s;
	if (c->g->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(c->g->cpu, &set);
		int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
		if (rc)
			tlcm_warn(c->g->id, "cannot pin to cpu %d: %s",
				  c->g->cpu, strerror(rc));
	}
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (!c->ready && !atomic_load(&s->exiting))
			pthread_cond_wait(&c->cv, &c->mu);
		bool go = c->ready;
		c->ready = false;
		pthread_mutex_unlock(&c->mu);
		if (atomic_load(&s->exiting))
			return NULL;
		int exp = ST_QUEUED;
		if (go && atomic_compare_exchange_strong(&c->run_state, &exp,
							 ST_RUNNING))
			run(c);
	}
}

/* Sleeps until the next tick is due, marks due nodes and wakes them. */
static void *timer(void *arg)
{
	sched_t *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!atomic_load(&s->exiting)) {
		uint64_t now = tlcm_now_ns(), next = UINT64_MAX;
		for (size_t i = 0; i < s->n; i++) {
			tlcm_ctx_t *c = &s->nodes[i];
			uint64_t p = atomic_load(&c->tick_period);
			if (c->finished || p == 0 || p == TLCM_TICK_OFF)
				continue;
			uint64_t t = atomic_load(&c->next_tick);
			if (t <= now) {
				/* skip missed ticks instead of bursting */
				uint64_t nt = t + p <= now ? now + p : t + p;
				atomic_store(&c->next_tick, nt);
				atomic_store(&c->tick_due, 1);
				pthread_mutex_unlock(&s->mu);
				wake(c);
				pthread_mutex_lock(&s->mu);
				t = nt;
			}
			if (t < next)
				next = t;
		}
		if (next == UINT64_MAX) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&s->timer_cv, &s->mu, &ts);
		} else if (next > now) {
			struct timespec ts = {(time_t)(next / 1000000000u),
					      (long)(next % 1000000000u)};
			pthread_cond_timedwait(&s->timer_cv, &s->mu, &ts);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- setup and teardown --------------------------------------------------- */

static void on_signal(int sig)
{
	(void)sig;
	atomic_fetch_add(&stop_signals, 1);
}

void tlcm_request_stop(void)
{
	atomic_fetch_add(&stop_signals, 1);
}

static int ranks(sched_t *s)
{
	const tlcm_graph_t *g = s->g;
	/* longest path from a source over non-feedback edges (graph is a
	 * DAG there; validated at load) */
	bool changed = true;
	for (size_t it = 0; changed && it <= s->n; it++) {
		changed = false;
		for (size_t i = 0; i < g->nedges; i++) {
			const tlcm_gedge_t *e = &g->edges[i];
			if (e->feedback)
				continue;
			int r = s->nodes[e->from].rank + 1;
			if (r >= MAX_RANKS)
				r = MAX_RANKS - 1;
			if (s->nodes[e->to].rank < r) {
				s->nodes[e->to].rank = r;
				changed = true;
			}
		}
	}
	int max = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].rank > max)
			max = s->nodes[i].rank;
	return max + 1;
}

static int setup(sched_t *s, const tlcm_graph_t *g)
{
	s->g = g;
	s->n = g->nnodes;
	s->nodes = calloc(s->n, sizeof *s->nodes);
	s->rings = calloc(g->nedges ? g->nedges : 1, sizeof *s->rings);
	if (!s->nodes || !s->rings)
		return TLCM_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->id_mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_cond_init(&s->done_cv, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->timer_cv, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		const tlcm_gnode_t *gn = &g->nodes[i];
		c->s = s;
		c->g = gn;
		c->t = gn->type;
		c->own = gn->own_thread;
		c->isolated = gn->isolate;
		if (c->isolated) /* never run here: its child does */
			atomic_store(&c->run_state, ST_RUNNING);
		atomic_store(&c->tick_period, TLCM_TICK_OFF);
		atomic_store(&c->next_tick, UINT64_MAX);
		c->state = calloc(1, c->t->state_size ? c->t->state_size : 1);
		c->params = calloc(gn->nparams ? gn->nparams : 1,
				   sizeof *c->params);
		c->out = calloc(gn->nout ? gn->nout : 1, sizeof *c->out);
		c->nout = gn->nout;
		if (!c->state || !c->params || !c->out)
			return TLCM_ENOMEM;
		for (size_t p = 0; p < gn->nparams; p++) {
			char why[300];
			int rc = tlcm_param_parse(gn->params[p].d,
						  gn->params[p].text,
						  &c->params[p], why, sizeof why);
			if (rc)
				return rc;
			c->params[p].given = gn->params[p].given;
		}
		pthread_mutex_init(&c->mu, NULL);
		pthread_cond_init(&c->cv, NULL);
	}
	for (size_t i = 0; i < g->nedges; i++) {
		const tlcm_gedge_t *e = &g->edges[i];
		char name[96];
		snprintf(name, sizeof name, "tlcm:%s->%s", g->nodes[e->from].id,
			 g->nodes[e->to].id);
		int rc = tlcm_ring_create(&s->rings[i], e->capacity, e->policy,
					  name);
		if (rc)
			return rc;
		tlcm_ctx_t *to = &s->nodes[e->to];
		in_edge_t *ni = realloc(to->in, (to->nin + 1) * sizeof *ni);
		if (!ni)
			return TLCM_ENOMEM;
		to->in = ni;
		to->in[to->nin++] = (in_edge_t){
			.ring = s->rings[i],
			.port = e->to_port,
			.trusted = !g->nodes[e->from].isolate,
			.optional_for_eos = e->feedback ||
					    e->to_port == g->nodes[e->to].nin};
		tlcm_ring_set_notify(s->rings[i], wake_cb, to);
		tlcm_ctx_t *from = &s->nodes[e->from];
		tlcm_ring_set_space_notify(s->rings[i], wake_cb, from);
		out_port_t *op = &from->out[e->from_port];
		tlcm_ring_t **nr = realloc(op->rings, (op->n + 1) * sizeof *nr);
		if (!nr)
			return TLCM_ENOMEM;
		op->rings = nr;
		tlcm_ctx_t **nd = realloc(op->dst, (op->n + 1) * sizeof *nd);
		if (!nd)
			return TLCM_ENOMEM;
		op->dst = nd;
		op->rings[op->n] = s->rings[i];
		op->dst[op->n++] = to;
	}
	s->nranks = ranks(s);
	return 0;
}

static void teardown(sched_t *s)
{
	for (size_t i = 0; s->nodes && i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		for (size_t p = 0; p < c->g->nparams && c->params; p++)
			tlcm_pval_clear(&c->params[p]);
		free(c->params);
		for (size_t p = 0; p < c->nout && c->out; p++) {
			free(c->out[p].rings);
			free(c->out[p].dst);
		}
		free(c->out);
		free(c->in);
		free(c->state);
		free(c->scratch);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
	}
	for (size_t i = 0; s->rings && i < s->g->nedges; i++)
		tlcm_ring_free(s->rings[i]);
	for (int r = 0; r < MAX_RANKS; r++)
		free(s->q[r]);
	free(s->rings);
	free(s->nodes);
	free(s->workers);
}

/* ---- introspection provider -------------------------------------------- */

static char *print_json(cJSON *j)
{
	char *out = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (!out)
		return NULL;
	size_t n = strlen(out);
	char *r = realloc(out, n + 2); /* end with a newline */
	if (!r)
		return out;
	r[n] = '\n';
	r[n + 1] = 0;
	return r;
}

static const char *node_state_name(const tlcm_ctx_t *c)
{
	if (atomic_load(&c->finished))
		return GET(c->st.errors) && c->g->on_error == TLCM_ON_ERROR_STOP
			       ? "failed" : "finished";
	return "running";
}

static void edge_names(const tlcm_graph_t *g, size_t i, char *from, char *to,
		       size_t n)
{
	const tlcm_gedge_t *e = &g->edges[i];
	snprintf(from, n, "%s.%s", g->nodes[e->from].id,
		 g->nodes[e->from].type->outputs[e->from_port].name);
	snprintf(to, n, "%s.%s", g->nodes[e->to].id,
		 tlcm_gnode_input_name(&g->nodes[e->to], e->to_port));
}

static char *ins_graph(void *arg)
{
	sched_t *s = arg;
	const tlcm_graph_t *g = s->g;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "graph", g->name);
	cJSON_AddStringToObject(j, "profile", !g->profiled ? "none"
				: tlcm_profile_name((tlcm_profile_t)g->profile));
	cJSON_AddNumberToObject(j, "workers", s->nworkers);
	cJSON *nodes = cJSON_AddArrayToObject(j, "nodes");
	for (size_t i = 0; i < s->n; i++) {
		const tlcm_gnode_t *gn = &g->nodes[i];
		cJSON *n = cJSON_CreateObject();
		cJSON_AddStringToObject(n, "id", gn->id);
		cJSON_AddStringToObject(n, "type", gn->type->name);
		cJSON_AddStringToObject(n, "thread", gn->own_thread ? "own"
								    : "pool");
		cJSON_AddStringToObject(n, "isolate", "none");
		cJSON_AddStringToObject(n, "state", node_state_name(&s->nodes[i]));
		cJSON *ps = cJSON_AddObjectToObject(n, "params");
		/* as configured: run-time changes live in the node's own
		 * copies, which only its thread may touch */
		for (size_t p = 0; p < gn->nparams; p++)
			cJSON_AddStringToObject(ps, gn->params[p].d->name,
				tlcm_param_display(&gn->params[p]));
		cJSON *in = cJSON_AddArrayToObject(n, "inputs");
		for (size_t p = 0; p <= gn->nin; p++)
			cJSON_AddItemToArray(in, cJSON_CreateString(
				tlcm_gnode_input_name(gn, p)));
		cJSON *out = cJSON_AddArrayToObject(n, "outputs");
		for (size_t p = 0; p < gn->nout; p++)
			cJSON_AddItemToArray(out, cJSON_CreateString(
				gn->type->outputs[p].name));
		cJSON_AddItemToArray(nodes, n);
	}
	cJSON *edges = cJSON_AddArrayToObject(j, "edges");
	for (size_t i = 0; i < g->nedges; i++) {
		char from[160], to[160];
		edge_names(g, i, from, to, sizeof from);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "from", from);
		cJSON_AddStringToObject(e, "to", to);
		cJSON_AddNumberToObject(e, "capacity",
					(double)tlcm_ring_capacity(s->rings[i]));
		cJSON_AddStringToObject(e, "policy",
					tlcm_edge_policy_name(g->edges[i].policy));
		cJSON_AddBoolToObject(e, "feedback", g->edges[i].feedback);
		cJSON_AddItemToArray(edges, e);
	}
	return print_json(j);
}

static uint64_t pct(const tlcm_ctx_t *c, double p)
{
	uint64_t total = 0, seen = 0;
	for (int b = 0; b < 48; b++)
		total += GET(c->st.hist[b]);
	if (!total)
		return 0;
	uint64_t want = (uint64_t)((double)total * p);
	for (int b = 0; b < 48; b++) {
		seen += GET(c->st.hist[b]);
		if (seen > want)
			return b ? (uint64_t)1 << b : 0; /* bucket's top */
	}
	return 0;
}

typedef struct {
	double uptime, cpu;
	uint64_t rss;
} proc_t;

/* User + system CPU seconds of the whole process so far. */
static double process_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void proc_figures(const sched_t *s, proc_t *p)
{
	p->uptime = (double)(tlcm_now_ns() - s->t0) / 1e9;
	p->cpu = process_cpu();
	p->rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages, res;
	if (f && fscanf(f, "%lu %lu", &pages, &res) == 2)
		p->rss = (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
	if (f)
		fclose(f);
}

size_t tlcm_graph_nodes(tlcm_ctx_t *ctx, tlcm_node_figures_t *out,
			size_t max)
{
	sched_t *s = ctx->s;
	if (child_mode)
		return 0;
	for (size_t i = 0; i < s->n && i < max; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		out[i] = (tlcm_node_figures_t){
			.id = c->g->id,
			.type = c->t->name,
			.state = node_state_name(c),
			.in = GET(c->st.in),
			.out = GET(c->st.out),
			.dropped = GET(c->st.dropped),
			.errors = GET(c->st.errors),
			.restarts = GET(c->st.restarts),
			.batches = GET(c->st.batches),
			.busy_ns = GET(c->st.busy_ns),
		};
	}
	return s->n;
}

size_t tlcm_graph_edges(tlcm_ctx_t *ctx, tlcm_edge_figures_t *out,
			size_t max)
{
	sched_t *s = ctx->s;
	const tlcm_graph_t *g = s->g;
	if (child_mode)
		return 0;
	for (size_t i = 0; i < g->nedges && i < max; i++) {
		const tlcm_gedge_t *e = &g->edges[i];
		const tlcm_gnode_t *from = &g->nodes[e->from];
		tlcm_ring_stats_t st;
		tlcm_ring_stats(s->rings[i], &st);
		out[i] = (tlcm_edge_figures_t){
			.from = from->id,
			.from_port = from->type->outputs[e->from_port].name,
			.to = g->nodes[e->to].id,
			.to_port = tlcm_gnode_input_name(&g->nodes[e->to],
							 e->to_port),
			.used = st.used,
			.capacity = st.capacity,
			.messages = st.committed,
			.bytes = st.bytes,
			.dropped = st.dropped,
			.full = st.full,
			.feedback = e->feedback,
		};
	}
	return g->nedges;
}

const char *tlcm_graph_name(const tlcm_ctx_t *ctx)
{
	return ctx->s->g->name;
}

const char *tlcm_profile(const tlcm_ctx_t *ctx)
{
	const tlcm_graph_t *g = ctx->s->g;
	return tlcm_profile_name(g->profiled ? (tlcm_profile_t)g->profile
					     : TLCM_PROFILE_BALANCED);
}

static char *ins_stats(void *arg)
{
	sched_t *s = arg;
	const tlcm_graph_t *g = s->g;
	proc_t pr;
	proc_figures(s, &pr);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "graph", g->name);
	cJSON_AddNumberToObject(j, "uptime_s", pr.uptime);
	cJSON *p = cJSON_AddObjectToObject(j, "process");
	cJSON_AddNumberToObject(p, "rss_bytes", (double)pr.rss);
	cJSON_AddNumberToObject(p, "cpu_seconds", pr.cpu);
	cJSON *nodes = cJSON_AddArrayToObject(j, "nodes");
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		cJSON *n = cJSON_CreateObject();
		cJSON_AddStringToObject(n, "id", c->g->id);
		cJSON_AddStringToObject(n, "state", node_state_name(c));
		cJSON_AddNumberToObject(n, "in", (double)GET(c->st.in));
		cJSON_AddNumberToObject(n, "out", (double)GET(c->st.out));
		cJSON_AddNumberToObject(n, "dropped", (double)GET(c->st.dropped));
		cJSON_AddNumberToObject(n, "batches", (double)GET(c->st.batches));
		cJSON_AddNumberToObject(n, "busy_ns", (double)GET(c->st.busy_ns));
		cJSON_AddNumberToObject(n, "process_ns_p50", (double)pct(c, 0.5));
		cJSON_AddNumberToObject(n, "process_ns_p99", (double)pct(c, 0.99));
		cJSON_AddNumberToObject(n, "errors", (double)GET(c->st.errors));
		cJSON_AddNumberToObject(n, "restarts", (double)GET(c->st.restarts));
		const char *le = atomic_load(&c->last_error);
		if (le)
			cJSON_AddStringToObject(n, "last_error", le);
		else
			cJSON_AddNullToObject(n, "last_error");
		cJSON_AddItemToArray(nodes, n);
	}
	cJSON *edges = cJSON_AddArrayToObject(j, "edges");
	for (size_t i = 0; i < g->nedges; i++) {
		char from[160], to[160];
		edge_names(g, i, from, to, sizeof from);
		tlcm_ring_stats_t st;
		tlcm_ring_stats(s->rings[i], &st);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "from", from);
		cJSON_AddStringToObject(e, "to", to);
		cJSON_AddNumberToObject(e, "used_bytes", (double)st.used);
		cJSON_AddNumberToObject(e, "capacity", (double)st.capacity);
		cJSON_AddNumberToObject(e, "messages", (double)st.committed);
		cJSON_AddNumberToObject(e, "bytes", (double)st.bytes);
		cJSON_AddNumberToObject(e, "msgs_per_s", pr.uptime > 0
			? (double)st.committed / pr.uptime : 0);
		cJSON_AddNumberToObject(e, "dropped", (double)st.dropped);
		cJSON_AddNumberToObject(e, "full", (double)st.full);
		cJSON_AddItemToArray(edges, e);
	}
	return print_json(j);
}

/* Prometheus label values: escape backslash, quote and newline. */
static void label(char *out, size_t n, const char *v)
{
	size_t k = 0;
	for (; *v && k + 3 < n; v++) {
		if (*v == '\\' || *v == '"') {
			out[k++] = '\\';
			out[k++] = *v;
		} else if (*v == '\n') {
			out[k++] = '\\';
			out[k++] = 'n';
		} else {
			out[k++] = *v;
		}
	}
	out[k] = 0;
}

static char *ins_metrics(void *arg)
{
	sched_t *s = arg;
	const tlcm_graph_t *g = s->g;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	char gl[256];
	label(gl, sizeof gl, g->name);
	static const struct {
		const char *name, *type, *help;
		int field;
	} nm[] = {
		{"tinylcm_node_messages_in_total", "counter",
		 "Messages a node received.", 0},
		{"tinylcm_node_messages_out_total", "counter",
		 "Messages a node emitted.", 1},
		{"tinylcm_node_dropped_total", "counter",
		 "Messages a node could not deliver for reasons other than "
		 "edge policy.", 2},
		{"tinylcm_node_errors_total", "counter",
		 "Callback failures of a node.", 3},
		{"tinylcm_node_restarts_total", "counter",
		 "Restarts of a node by its on_error policy.", 4},
		{"tinylcm_node_batches_total", "counter",
		 "Batches of messages a node processed.", 5},
	};
	for (size_t m = 0; m < sizeof nm / sizeof nm[0]; m++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", nm[m].name,
			nm[m].help, nm[m].name, nm[m].type);
		for (size_t i = 0; i < s->n; i++) {
			tlcm_ctx_t *c = &s->nodes[i];
			_Atomic uint64_t *fld[] = {&c->st.in, &c->st.out,
						   &c->st.dropped, &c->st.errors,
						   &c->st.restarts,
						   &c->st.batches};
			char nl[256];
			label(nl, sizeof nl, c->g->id);
			fprintf(f, "%s{graph=\"%s\",node=\"%s\"} %llu\n",
				nm[m].name, gl, nl,
				(unsigned long long)atomic_load_explicit(
					fld[nm[m].field], memory_order_relaxed));
		}
	}
	fprintf(f, "# HELP tinylcm_node_busy_seconds_total Wall time a node "
		"spent in process() and tick().\n# TYPE "
		"tinylcm_node_busy_seconds_total counter\n");
	for (size_t i = 0; i < s->n; i++) {
		char nl[256];
		label(nl, sizeof nl, s->nodes[i].g->id);
		fprintf(f, "tinylcm_node_busy_seconds_total{graph=\"%s\","
			"node=\"%s\"} %.9f\n", gl, nl,
			(double)GET(s->nodes[i].st.busy_ns) / 1e9);
	}
	fprintf(f, "# HELP tinylcm_node_process_seconds Time per message "
		"in process(), by quantile.\n# TYPE tinylcm_node_process_seconds "
		"summary\n");
	for (size_t i = 0; i < s->n; i++) {
		char nl[256];
		label(nl, sizeof nl, s->nodes[i].g->id);
		uint64_t total = 0;
		for (int b = 0; b < 48; b++)
			total += GET(s->nodes[i].st.hist[b]);
		fprintf(f, "tinylcm_node_process_seconds{graph=\"%s\",node="
			"\"%s\",quantile=\"0.5\"} %.9f\n", gl, nl,
			(double)pct(&s->nodes[i], 0.5) / 1e9);
		fprintf(f, "tinylcm_node_process_seconds{graph=\"%s\",node="
			"\"%s\",quantile=\"0.99\"} %.9f\n", gl, nl,
			(double)pct(&s->nodes[i], 0.99) / 1e9);
		fprintf(f, "tinylcm_node_process_seconds_count{graph=\"%s\","
			"node=\"%s\"} %llu\n", gl, nl,
			(unsigned long long)total);
		fprintf(f, "tinylcm_node_process_seconds_sum{graph=\"%s\","
			"node=\"%s\"} 0\n", gl, nl);
	}
	static const struct {
		const char *name, *type, *help;
	} em[] = {
		{"tinylcm_edge_used_bytes", "gauge", "Bytes queued on an edge."},
		{"tinylcm_edge_capacity_bytes", "gauge", "Ring size of an edge."},
		{"tinylcm_edge_messages_total", "counter",
		 "Messages committed to an edge."},
		{"tinylcm_edge_dropped_total", "counter",
		 "Messages an edge's policy dropped."},
	};
	for (size_t m = 0; m < sizeof em / sizeof em[0]; m++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", em[m].name,
			em[m].help, em[m].name, em[m].type);
		for (size_t i = 0; i < g->nedges; i++) {
			char from[160], to[160], fl[256], tl[256];
			edge_names(g, i, from, to, sizeof from);
			label(fl, sizeof fl, from);
			label(tl, sizeof tl, to);
			tlcm_ring_stats_t st;
			tlcm_ring_stats(s->rings[i], &st);
			uint64_t v = m == 0 ? st.used : m == 1 ? st.capacity
					  : m == 2 ? st.committed : st.dropped;
			fprintf(f, "%s{graph=\"%s\",from=\"%s\",to=\"%s\"} "
				"%llu\n", em[m].name, gl, fl, tl,
				(unsigned long long)v);
		}
	}
	proc_t pr;
	proc_figures(s, &pr);
	fprintf(f, "# HELP tinylcm_process_resident_memory_bytes Resident "
		"memory of the graph process.\n# TYPE "
		"tinylcm_process_resident_memory_bytes gauge\n"
		"tinylcm_process_resident_memory_bytes{graph=\"%s\"} %llu\n",
		gl, (unsigned long long)pr.rss);
	fprintf(f, "# HELP tinylcm_process_cpu_seconds_total CPU time of the "
		"graph process.\n# TYPE tinylcm_process_cpu_seconds_total "
		"counter\ntinylcm_process_cpu_seconds_total{graph=\"%s\"} "
		"%.6f\n", gl, pr.cpu);
	fclose(f);
	return buf;
}

static char *ins_health(void *arg, int *status)
{
	sched_t *s = arg;
	cJSON *j = cJSON_CreateObject();
	cJSON *why = cJSON_CreateArray();
	pthread_mutex_lock(&s->mu);
	if (s->status)
		cJSON_AddItemToArray(why, cJSON_CreateString(s->why));
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(node_state_name(&s->nodes[i]), "failed")) {
			char m[200];
			snprintf(m, sizeof m, "node '%s' failed: %s",
				 s->nodes[i].g->id,
				 atomic_load(&s->nodes[i].last_error)
					 ? atomic_load(&s->nodes[i].last_error)
					 : "stopped");
			cJSON_AddItemToArray(why, cJSON_CreateString(m));
		}
	if (atomic_load(&s->stopping) && !cJSON_GetArraySize(why))
		cJSON_AddItemToArray(why, cJSON_CreateString(
			"the graph is stopping"));
	bool ok = cJSON_GetArraySize(why) == 0;
	*status = ok ? 200 : 503;
	cJSON_AddStringToObject(j, "status", ok ? "ok" : "unhealthy");
	cJSON_AddItemToObject(j, "reasons", why);
	return print_json(j);
}

static char *ins_node_state(void *arg, const char *id, int *status)
{
	sched_t *s = arg;
	tlcm_ctx_t *c = NULL;
	for (size_t i = 0; i < s->n && !c; i++)
		if (!strcmp(s->nodes[i].g->id, id))
			c = &s->nodes[i];
	if (!c) {
		*status = 404;
		char *b = malloc(300);
		if (b)
			snprintf(b, 300, "{\"error\":{\"status\":404,"
				 "\"message\":\"no node '%.100s' in this "
				 "graph\"}}\n", id);
		return b;
	}
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "id", c->g->id);
	cJSON_AddStringToObject(j, "type", c->t->name);
	cJSON_AddStringToObject(j, "state", node_state_name(c));
	if (c->t->describe && !atomic_load(&c->finished)) {
		/* run describe in the node's exclusive context: claim it like
		 * a worker would, give up after 200 ms */
		bool claimed = false;
		for (int tries = 0; tries < 200 && !claimed; tries++) {
			int exp = ST_IDLE;
			claimed = atomic_compare_exchange_strong(
				&c->run_state, &exp, ST_RUNNING);
			if (!claimed)
				usleep(1000);
		}
		if (claimed) {
			char buf[4096] = "";
			int rc = atomic_load(&c->finished)
					 ? TLCM_ECLOSED
					 : c->t->describe(c, c->state, buf,
							  sizeof buf);
			release_node(c);
			cJSON *d = rc ? NULL : cJSON_Parse(buf);
			if (d)
				cJSON_AddItemToObject(j, "summary", d);
			else
				cJSON_AddStringToObject(j, "summary_error",
					rc ? tlcm_strerror(rc)
					   : "the node's summary is not JSON");
		} else {
			cJSON_AddStringToObject(j, "summary_error",
						"node busy, try again");
		}
	}
	return print_json(j);
}

/* Call the run's watch with the graph's health; true: it asks for a
 * stop. */
static bool watch(sched_t *s, const tlcm_run_opts_t *o, uint64_t t0,
		  unsigned sigs)
{
	char why[sizeof s->why];
	tlcm_run_health_t h = {.seconds = (double)(tlcm_now_ns() - t0) / 1e9,
			       .why = why, .stop_requests = sigs,
			       .stopping = atomic_load(&s->stopping)};
	why[0] = 0;
	pthread_mutex_lock(&s->mu);
	h.status = s->status;
	if (s->status)
		snprintf(why, sizeof why, "%s", s->why);
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		h.restarts += GET(c->st.restarts);
		if (strcmp(node_state_name(c), "failed"))
			continue;
		if (!h.failed++ && !why[0]) {
			const char *le = atomic_load(&c->last_error);
			snprintf(why, sizeof why, "node '%s' failed: %s",
				 c->g->id, le ? le : "stopped");
		}
	}
	return o->watch(o->watch_arg, &h);
}

int tlcm_graph_run(const tlcm_graph_t *g, const tlcm_run_opts_t *o,
		   tlcm_run_result_t *res)
{
	memset(res, 0, sizeof *res);
	/* stop requests count from here on: one made before this run (the
	 * one that stopped an earlier run in this process) is not for us */
	unsigned stops0 = (unsigned)atomic_load(&stop_signals);
	sched_t *s = calloc(1, sizeof *s);
	if (!s)
		return TLCM_ENOMEM;

	int rc = setup(s, g);
	/* before any thread of ours exists: see zygote_main */
	if (!rc)
		rc = zygotes_start(s, res->why, sizeof res->why);
	/* from here on (the zygotes forked with the default actions): a
	 * SIGINT while the store opens and the nodes start is a stop request
	 * like any other, not the default death */
	struct sigaction sa = {0}, old_int, old_term;
	if (o && o->handle_signals) {
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old_int);
		sigaction(SIGTERM, &sa, &old_term);
	}
	const char **stateful = NULL; /* nodes with a family in the store */
	if (!rc && g->store && !(stateful = calloc(s->n + 1, sizeof *stateful)))
		rc = TLCM_ENOMEM;
	if (!rc && g->store) {
		tlcm_store_opts_t so = {.sync = (tlcm_sync_t)g->sync,
					.sync_interval = g->sync_interval,
					.keep = g->keep,
					.fresh = g->fresh_store,
					.nodes = stateful};
		for (size_t i = 0; i < s->n; i++)
			if (s->nodes[i].t->snapshot)
				stateful[so.nnodes++] = s->nodes[i].g->id;
		char why[400];
		rc = tlcm_store_open(&s->store, g->store, &so, why, sizeof why);
		/* standby: wait for the holder of the store's lock to go */
		for (bool said = false; rc == TLCM_EBUSY && o && o->standby &&
		     (unsigned)atomic_load(&stop_signals) == stops0;) {
			if (!said)
				tlcm_info(g->name, "standby: %s; waiting to "
					  "take over", why);
			said = true;
			struct timespec ts = {0, 100000000};
			nanosleep(&ts, NULL);
			rc = tlcm_store_open(&s->store, g->store, &so, why,
					     sizeof why);
			if (!rc)
				tlcm_info(g->name, "standby: store %s is ours "
					  "now: taking over", g->store);
		}
		if (rc)
			snprintf(res->why, sizeof res->why, "%s", why);
	}
	free(stateful);
	size_t inited = 0;
	for (; rc == 0 && inited < s->n; inited++) {
		tlcm_ctx_t *c = &s->nodes[inited];
		if (c->isolated)
			continue; /* initialised in its own process */
		if (c->t->init && (rc = c->t->init(c, c->state))) {
			snprintf(res->why, sizeof res->why, "node '%s' (type %s) "
				 "failed to start: %s", c->g->id, c->t->name,
				 tlcm_strerror(rc));
			break;
		}
		if ((rc = restore(c, 0))) {
			snprintf(res->why, sizeof res->why, "node '%s': cannot "
				 "read its state: %s", c->g->id,
				 tlcm_strerror(rc));
			inited++;
			break;
		}
	}
	if (rc) {
		if (!res->why[0])
			snprintf(res->why, sizeof res->why, "cannot set up the "
				 "graph: %s", tlcm_strerror(rc));
		for (size_t i = 0; i < inited; i++)
			if (s->nodes[i].t->fini && !s->nodes[i].isolated)
				s->nodes[i].t->fini(&s->nodes[i],
						    s->nodes[i].state);
		res->status = rc;
		zygotes_stop(s);
		tlcm_store_close(s->store);
		teardown(s);
		free(s);
		if (o && o->handle_signals) {
			sigaction(SIGINT, &old_int, NULL);
			sigaction(SIGTERM, &old_term, NULL);
		}
		return rc;
	}

	uint64_t t0 = tlcm_now_ns();
	double cpu0 = process_cpu();
	s->t0 = t0;
	const char *url = g->introspect ? g->introspect : TLCM_INTROSPECT_DEFAULT;
	if (!(o && o->headless) && strcmp(url, "off")) {
		tlcm_introspect_ops_t ops = {s, ins_graph, ins_stats,
					     ins_metrics, ins_health,
					     ins_node_state};
		char why[300];
		if (tlcm_introspect_start(&s->introspect, url, &ops, why,
					  sizeof why))
			tlcm_warn(g->name, "%s; running without introspection",
				  why);
		else
			tlcm_info(g->name, "introspection at %s", url);
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	s->nworkers = g->workers > 0 ? g->workers : (int)(ncpu > 0 ? ncpu : 1);
	s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
	for (int i = 0; i < s->nworkers; i++)
		pthread_create(&s->workers[i], NULL, worker, s);
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].own)
			pthread_create(&s->nodes[i].thread, NULL, own_thread,
				       &s->nodes[i]);
	pthread_create(&s->timer, NULL, timer, s);
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].isolated)
			pthread_create(&s->nodes[i].supervisor, NULL, supervise,
				       &s->nodes[i]);
	/* first round: every node looks for work once */
	for (size_t i = 0; i < s->n; i++)
		wake(&s->nodes[i]);

	unsigned seen_signals = 0;
	pthread_mutex_lock(&s->mu);
	while (atomic_load(&s->nfinished) < s->n) {
		/* signals and the duration are polled: 4 wake-ups a second
		 * keep an idle graph near 0 % CPU */
		long wait_ms = 250;
		if (o && o->duration_s > 0) {
			double left = o->duration_s -
				      (double)(tlcm_now_ns() - t0) / 1e9;
			if (left * 1000 < wait_ms)
				wait_ms = left > 0 ? (long)(left * 1000) + 1 : 1;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += wait_ms * 1000000;
		while (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->done_cv, &s->mu, &ts);
		pthread_mutex_unlock(&s->mu);
		unsigned sigs = (unsigned)atomic_load(&stop_signals) - stops0;
		if (sigs != seen_signals) {
			seen_signals = sigs;
			if (sigs == 1) {
				tlcm_info(g->name, "stopping: draining the graph "
					  "(signal again to abort)");
				request_stop(s);
			} else {
				tlcm_warn(g->name, "aborting without drain");
				set_failure(s, TLCM_ECLOSED, "aborted by signal");
				pthread_mutex_lock(&s->mu);
				break;
			}
		}
		if (o && o->duration_s > 0 &&
		    (double)(tlcm_now_ns() - t0) / 1e9 >= o->duration_s)
			request_stop(s);
		if (o && o->watch && watch(s, o, t0, sigs))
			request_stop(s);
		pthread_mutex_lock(&s->mu);
	}
	atomic_store(&s->exiting, 1);
	pthread_cond_broadcast(&s->cv);
	pthread_cond_broadcast(&s->timer_cv);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].own) {
			pthread_mutex_lock(&s->nodes[i].mu);
			pthread_cond_signal(&s->nodes[i].cv);
			pthread_mutex_unlock(&s->nodes[i].mu);
			pthread_join(s->nodes[i].thread, NULL);
		}
	pthread_join(s->timer, NULL);
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].isolated)
			pthread_join(s->nodes[i].supervisor, NULL);
	zygotes_stop(s);
	tlcm_introspect_stop(s->introspect);
	if (o && o->watch) /* the last look: how it ended */
		watch(s, o, t0, (unsigned)atomic_load(&stop_signals) - stops0);
	if (o && o->handle_signals) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
	}
	res->seconds = (double)(tlcm_now_ns() - t0) / 1e9;
	res->cpu_seconds = process_cpu() - cpu0;
	res->status = s->status;
	snprintf(res->why, sizeof res->why, "%s", s->why);
	res->nnodes = s->n;
	res->nodes = calloc(s->n, sizeof *res->nodes);
	for (size_t i = 0; i < s->n; i++) {
		tlcm_ctx_t *c = &s->nodes[i];
		if (res->nodes)
			res->nodes[i] = (tlcm_node_stats_t){
				GET(c->st.in), GET(c->st.out),
				GET(c->st.dropped), GET(c->st.errors),
				GET(c->st.restarts), GET(c->st.busy_ns)};
		if (c->isolated) /* its child snapshotted and finished */
			continue;
		if (s->store && c->t->snapshot)
			take_snapshot(c, "shutdown");
		if (c->t->fini)
			c->t->fini(c, c->state);
	}
	tlcm_store_close(s->store);
	res->nedges = g->nedges;
	res->edges = calloc(g->nedges ? g->nedges : 1, sizeof *res->edges);
	for (size_t i = 0; i < g->nedges; i++) {
		tlcm_ring_stats_t st;
		tlcm_ring_stats(s->rings[i], &st);
		if (res->edges)
			res->edges[i] = st;
		if (res->nodes)
			res->nodes[g->edges[i].from].dropped += st.dropped;
	}
	if (!(o && o->quiet) && res->nodes)
		for (size_t i = 0; i < s->n; i++) {
			tlcm_node_stats_t *ns = &res->nodes[i];
			/* per message: those it took in, or for a source
			 * those it made */
			uint64_t msgs = g->nodes[i].nin ? ns->in : ns->out;
			char per[48] = "";
			if (msgs)
				snprintf(per, sizeof per, " (%.2f µs/msg)",
					 (double)ns->busy_ns / 1e3 /
						 (double)msgs);
			tlcm_info(g->nodes[i].id, "in %llu, out %llu, dropped "
				  "%llu, errors %llu, restarts %llu, busy %.1f "
				  "ms%s",
				  (unsigned long long)ns->in,
				  (unsigned long long)ns->out,
				  (unsigned long long)ns->dropped,
				  (unsigned long long)ns->errors,
				  (unsigned long long)ns->restarts,
				  (double)ns->busy_ns / 1e6, per);
		}
	teardown(s);
	free(s);
	return res->status;
}

void tlcm_run_result_fini(tlcm_run_result_t *res)
{
	free(res->nodes);
	free(res->edges);
	res->nodes = NULL;
	res->edges = NULL;
}
