/* bench_ring.c — suite "ring": the shared-memory SPSC ring against pipes,
 * AF_UNIX sockets and NNG pair0 over inproc://.
 *
 * A producer thread moves N messages to a consumer thread; a run is timed
 * from the producer's start to the consumer's last message. The consumer
 * reads the first and last 8 bytes of every payload (sequence number and a
 * checksum word, or a CLOCK_MONOTONIC stamp in the latency cases) and a run
 * whose count, order or checksum is wrong is not reported.
 */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/cpu.h"
#include "engine/ring.h"

#define RING_CAP ((size_t)1 << 20) /* 1 MiB */
#define BATCH 64                   /* messages per publish / write() */
#define SPIN 500                   /* empty-ring checks before parking */
#define PERIOD_NS 20000            /* latency cases: one message per 20 us */
#define MAX_SIZE 1024
#define MIX 0x9e3779b97f4a7c15ull  /* checksum word = seq * MIX */
#define NNG_TIMEOUT_MS 10000       /* a lost message fails, not hangs */
#define NNG_BUF 1024               /* messages queued per NNG socket side */


typedef struct xport xport_t;

/* One run: what to move, the transport's handles, what the consumer saw. */
typedef struct {
	const xport_t *x;
	size_t size;     /* payload bytes per message */
	size_t n;        /* messages */
	bool batched;
	uint64_t *lat;   /* latency samples (n of them), or NULL */
	uint8_t tmpl[MAX_SIZE];
	/* transport */
	tlcm_ring_t *ring;
	int fd[2];       /* [0] consumer's end, [1] producer's end */
	nng_socket sock[2];
	pthread_barrier_t go;
	/* results */
	uint64_t t0, t1;
	uint64_t got, bad, sum;
	bool perr, cerr; /* the side failed, saying why in pwhy / cwhy */
	char pwhy[96], cwhy[96];
} run_t;

struct xport {
	const char *name;
	int (*setup)(run_t *r);
	void (*produce)(run_t *r);
	void (*consume)(run_t *r);
	void (*teardown)(run_t *r);
};

/* ---- message contents, the same for every transport ---- */

/* The word the producer puts at the end of message i: a checksum word, or
 * in the latency cases the send time after pacing to PERIOD_NS. */
static inline uint64_t next_word(const run_t *r, uint64_t i, uint64_t *next)
{
	if (!r->lat)
		return i * MIX;
	uint64_t t;
	while ((t = bench_now_ns()) < *next)
		tlcm_cpu_relax();
	*next = t + PERIOD_NS;
	return t;
}

static inline void put(const run_t *r, uint8_t *p, uint64_t i, uint64_t w)
{
	memcpy(p, r->tmpl, r->size);
	memcpy(p, &i, 8);
	memcpy(p + r->size - 8, &w, 8);
}

static inline void take(run_t *r, const uint8_t *p, size_t size)
{
	uint64_t i, w;
	memcpy(&i, p, 8);
	memcpy(&w, p + r->size - 8, 8);
	if (i != r->got || size != r->size || r->got >= r->n) {
		r->bad++;
	} else if (r->lat) {
		r->lat[r->got] = bench_now_ns() - w;
	} else {
		r->sum += w;
	}
	r->got++;
}

/* ---- the ring ---- */

static int ring_setup(run_t *r)
{
	int rc = tlcm_ring_create(&r->ring, RING_CAP, TLCM_EDGE_BLOCK,
				  "tlcm-bench-ring");
	if (rc)
		fprintf(stderr, "ring: tlcm_ring_create: %s\n",
			tlcm_strerror(rc));
	return rc;
}

static void ring_produce(run_t *r)
{
	uint64_t next = 0;
	for (uint64_t i = 0; i < r->n; i++) {
		uint64_t w = next_word(r, i, &next);
		tlcm_msg_meta_t meta = {.ts_ns = r->lat ? w : 0};
		int err = 0;
		void *p = tlcm_ring_reserve(r->ring, r->size, 0, &err);
		if (!p) {
			r->perr = true;
			snprintf(r->pwhy, sizeof r->pwhy,
				 "tlcm_ring_reserve: %s", tlcm_strerror(err));
			break;
		}
		put(r, p, i, w);
		if (r->batched) {
			tlcm_ring_commit_defer(r->ring, p, r->size, &meta);
			if ((i + 1) % BATCH == 0)
				tlcm_ring_publish(r->ring);
		} else {
			tlcm_ring_commit(r->ring, p, r->size, &meta);
		}
	}
	tlcm_ring_close(r->ring); /* publishes the last partial batch */
}

/* Nothing to peek: spin a little, then park. True at end of stream. */
static bool ring_idle(run_t *r)
{
	for (int s = 0; s < SPIN; s++) {
		if (tlcm_ring_readable(r->ring))
			return false;
		tlcm_cpu_relax();
	}
	int rc = tlcm_ring_wait_data(r->ring, -1);
	if (rc == 0)
		return false;
	if (rc != TLCM_ECLOSED) {
		r->cerr = true;
		snprintf(r->cwhy, sizeof r->cwhy, "tlcm_ring_wait_data: %s",
			 tlcm_strerror(rc));
	}
	return true;
}

static void ring_consume(run_t *r)
{
	const tlcm_msg_t *m[BATCH];
	for (;;) {
		size_t k;
		if (r->batched) {
			k = tlcm_ring_peek_many(r->ring, m, BATCH);
		} else {
			m[0] = tlcm_ring_peek(r->ring);
			k = m[0] != NULL;
		}
		if (!k) {
			if (ring_idle(r))
				break;
			continue;
		}
		for (size_t j = 0; j < k; j++)
			take(r, tlcm_msg_data(m[j]), m[j]->size);
		tlcm_ring_release(r->ring, k);
	}
}

static void ring_teardown(run_t *r)
{
	tlcm_ring_free(r->ring);
	r->ring = NULL;
}

/* ---- byte streams (pipe; AF_UNIX SOCK_STREAM when batched) ---- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t k = write(fd, p, len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

/* One message per write(), or BATCH messages per write() when batched. */
static void stream_produce(run_t *r)
{
	static _Thread_local uint8_t buf[BATCH * MAX_SIZE];
	uint64_t next = 0;
	size_t per = r->batched ? BATCH : 1;
	for (uint64_t i = 0; i < r->n;) {
		size_t k = 0;
		for (; k < per && i < r->n; k++, i++)
			put(r, buf + k * r->size, i, next_word(r, i, &next));
		int e = write_all(r->fd[1], buf, k * r->size);
		if (e) {
			r->perr = true;
			snprintf(r->pwhy, sizeof r->pwhy, "write: %s",
				 strerror(e));
			break;
		}
	}
	close(r->fd[1]); /* end of stream */
	r->fd[1] = -1;
}

/* Reads up to one message (or one batch) at a time; any read may end in
 * the middle of a message, which is kept for the next read. */
static void stream_consume(run_t *r)
{
	static _Thread_local uint8_t buf[BATCH * MAX_SIZE];
	size_t want = (r->batched ? BATCH : 1) * r->size, have = 0;
	for (;;) {
		ssize_t k = read(r->fd[0], buf + have, want - have);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			r->cerr = true;
			snprintf(r->cwhy, sizeof r->cwhy, "read: %s",
				 strerror(errno));
			break;
		}
		if (k == 0) {
			if (have)
				r->bad++; /* a torn message at the end */
			break;
		}
		have += (size_t)k;
		size_t off = 0;
		for (; have - off >= r->size; off += r->size)
			take(r, buf + off, r->size);
		if (off && have > off)
			memmove(buf, buf + off, have - off);
		have -= off;
	}
	close(r->fd[0]); /* a producer still writing gets EPIPE, not stuck */
	r->fd[0] = -1;
}

static void fd_teardown(run_t *r)
{
	for (int i = 0; i < 2; i++)
		if (r->fd[i] >= 0) {
			close(r->fd[i]);
			r->fd[i] = -1;
		}
}

static int pipe_setup(run_t *r)
{
	int p[2];
	if (pipe(p)) {
		fprintf(stderr, "ring: pipe: %s\n", strerror(errno));
		return -1;
	}
	r->fd[0] = p[0];
	r->fd[1] = p[1];
	return 0;
}

/* ---- AF_UNIX: SOCK_SEQPACKET, one message per send, when unbatched;
 * SOCK_STREAM with BATCH messages per write() when batched (a datagram
 * socket cannot carry a batch as separate messages in one call short of
 * sendmmsg, and a stream is what a user batching by hand would pick). ---- */

static int unix_setup(run_t *r)
{
	int sv[2];
	int type = r->batched ? SOCK_STREAM : SOCK_SEQPACKET;
	if (socketpair(AF_UNIX, type, 0, sv)) {
		fprintf(stderr, "ring: socketpair: %s\n", strerror(errno));
		return -1;
	}
	r->fd[0] = sv[0];
	r->fd[1] = sv[1];
	return 0;
}

static void unix_produce(run_t *r)
{
	if (r->batched) {
		stream_produce(r);
		return;
	}
	uint8_t buf[MAX_SIZE];
	uint64_t next = 0;
	for (uint64_t i = 0; i < r->n; i++) {
		put(r, buf, i, next_word(r, i, &next));
		ssize_t k;
		do
			k = send(r->fd[1], buf, r->size, MSG_NOSIGNAL);
		while (k < 0 && errno == EINTR);
		if (k != (ssize_t)r->size) {
			r->perr = true;
			snprintf(r->pwhy, sizeof r->pwhy, "send: %s",
				 strerror(k < 0 ? errno : EMSGSIZE));
			break;
		}
	}
	close(r->fd[1]);
	r->fd[1] = -1;
}

static void unix_consume(run_t *r)
{
	if (r->batched) {
		stream_consume(r);
		return;
	}
	uint8_t buf[MAX_SIZE + 8];
	for (;;) {
		ssize_t k = recv(r->fd[0], buf, sizeof buf, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			r->cerr = true;
			snprintf(r->cwhy, sizeof r->cwhy, "recv: %s",
				 strerror(errno));
			break;
		}
		if (k == 0)
			break;
		if ((size_t)k < 8)
			r->bad++;
		else
			take(r, buf, (size_t)k);
	}
	close(r->fd[0]);
	r->fd[0] = -1;
}

/* ---- NNG pair0 over inproc://, one message per nng_send ----
 *
 * With the default (zero) buffers every message is a hand-off between
 * NNG's threads, ~20k msgs/s here; a user after throughput sets send and
 * receive buffers, so the baseline does too (NNG_BUF messages, about the
 * ring's 1 MiB for 1 KiB messages). Plain buffers both ways: nng_send
 * copies into a message, nng_recv copies out of it. ---- */

static int nng_setup(run_t *r)
{
	static unsigned serial;
	char url[64];
	const char *what = "nng_pair0_open";
	int rv;
	r->sock[0] = (nng_socket)NNG_SOCKET_INITIALIZER;
	r->sock[1] = (nng_socket)NNG_SOCKET_INITIALIZER;
	snprintf(url, sizeof url, "inproc://tlcm-bench-ring-%u", serial++);
	if ((rv = nng_pair0_open(&r->sock[0])) ||
	    (rv = nng_pair0_open(&r->sock[1])))
		goto fail;
	what = "nng_socket_set_ms";
	if ((rv = nng_socket_set_ms(r->sock[0], NNG_OPT_RECVTIMEO,
				    NNG_TIMEOUT_MS)) ||
	    (rv = nng_socket_set_ms(r->sock[1], NNG_OPT_SENDTIMEO,
				    NNG_TIMEOUT_MS)))
		goto fail;
	what = "nng_socket_set_int";
	if ((rv = nng_socket_set_int(r->sock[0], NNG_OPT_RECVBUF, NNG_BUF)) ||
	    (rv = nng_socket_set_int(r->sock[1], NNG_OPT_SENDBUF, NNG_BUF)))
		goto fail;
	what = "nng_listen";
	if ((rv = nng_listen(r->sock[0], url, NULL, 0)))
		goto fail;
	what = "nng_dial";
	if ((rv = nng_dial(r->sock[1], url, NULL, 0)))
		goto fail;
	return 0;
fail:
	fprintf(stderr, "ring: %s: %s\n", what, nng_strerror(rv));
	for (int i = 0; i < 2; i++)
		if (nng_socket_id(r->sock[i]) > 0)
			nng_close(r->sock[i]);
	return -1;
}

static void nng_produce(run_t *r)
{
	uint8_t buf[MAX_SIZE];
	uint64_t next = 0;
	for (uint64_t i = 0; i < r->n; i++) {
		put(r, buf, i, next_word(r, i, &next));
		int rv = nng_send(r->sock[1], buf, r->size, 0);
		if (rv) {
			r->perr = true;
			snprintf(r->pwhy, sizeof r->pwhy, "nng_send: %s",
				 nng_strerror(rv));
			break;
		}
	}
}

/* pair0 has no end of stream: the consumer counts n messages. */
static void nng_consume(run_t *r)
{
	uint8_t buf[MAX_SIZE + 8];
	while (r->got < r->n) {
		size_t sz = sizeof buf;
		int rv = nng_recv(r->sock[0], buf, &sz, 0);
		if (rv) {
			r->cerr = true;
			snprintf(r->cwhy, sizeof r->cwhy, "nng_recv: %s",
				 nng_strerror(rv));
			break;
		}
		if (sz < 8)
			r->bad++;
		else
			take(r, buf, sz);
	}
}

static void nng_teardown(run_t *r)
{
	nng_close(r->sock[1]);
	nng_close(r->sock[0]);
}

static const xport_t x_ring = {"ring", ring_setup, ring_produce, ring_consume,
			       ring_teardown};
static const xport_t x_pipe = {"pipe", pipe_setup, stream_produce,
			       stream_consume, fd_teardown};
static const xport_t x_unix = {"unix", unix_setup, unix_produce, unix_consume,
			       fd_teardown};
static const xport_t x_nng = {"nng_inproc", nng_setup, nng_produce,
			      nng_consume, nng_teardown};

/* ---- running and timing ---- */

static void *producer_main(void *p)
{
	run_t *r = p;
	pthread_barrier_wait(&r->go);
	r->t0 = bench_now_ns();
	r->x->produce(r);
	return NULL;
}

static void *consumer_main(void *p)
{
	run_t *r = p;
	pthread_barrier_wait(&r->go);
	r->x->consume(r);
	r->t1 = bench_now_ns();
	return NULL;
}

/* One run on a fresh transport; 0 when every message arrived intact. */
static int run_once(run_t *r)
{
	r->got = r->bad = r->sum = 0;
	r->perr = r->cerr = false;
	r->fd[0] = r->fd[1] = -1;
	if (r->x->setup(r))
		return -1;
	pthread_t pt, ct;
	pthread_barrier_init(&r->go, NULL, 2);
	if (pthread_create(&ct, NULL, consumer_main, r)) {
		fprintf(stderr, "ring: pthread_create failed\n");
		r->x->teardown(r);
		pthread_barrier_destroy(&r->go);
		return -1;
	}
	if (pthread_create(&pt, NULL, producer_main, r)) {
		/* the consumer waits at the barrier: stand in for the
		 * producer with an empty stream */
		fprintf(stderr, "ring: pthread_create failed\n");
		r->n = 0;
		pthread_barrier_wait(&r->go);
		r->t0 = bench_now_ns();
		r->x->produce(r);
		pthread_join(ct, NULL);
		r->x->teardown(r);
		pthread_barrier_destroy(&r->go);
		return -1;
	}
	pthread_join(pt, NULL);
	pthread_join(ct, NULL);
	r->x->teardown(r);
	pthread_barrier_destroy(&r->go);

	/* sum of i * MIX over 0..n-1, modulo 2^64 like the consumer's sum */
	uint64_t n = r->n, tri = n % 2 ? n * ((n - 1) / 2) : (n / 2) * (n - 1);
	uint64_t want_sum = r->lat ? 0 : tri * MIX;
	if (r->perr)
		fprintf(stderr, "ring: %s: producer: %s\n", r->x->name,
			r->pwhy);
	if (r->cerr)
		fprintf(stderr, "ring: %s: consumer: %s\n", r->x->name,
			r->cwhy);
	if (r->perr || r->cerr)
		return -1;
	if (r->got != r->n || r->bad || r->sum != want_sum) {
		fprintf(stderr, "ring: %s: consumer got %llu of %zu messages, "
			"%llu bad, checksum %s; not reporting\n", r->x->name,
			(unsigned long long)r->got, r->n,
			(unsigned long long)r->bad,
			r->sum == want_sum ? "ok" : "wrong");
		return -1;
	}
	return 0;
}

static int clamp_runs(const bench_opts_t *o)
{
	return o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Index of the p-th percentile of n sorted samples, by nearest rank. */
static size_t rank(size_t n, size_t p)
{
	return (n * p + 99) / 100 - 1;
}

/* One contender in a case: a transport, its run, its per-run figures
 * (msgs/s; or p50 in v and p99 in w). */
typedef struct {
	const char *name;
	run_t r;
	bool ok;
	double v[64], w[64];
} entry_t;

static void init_entry(entry_t *e, const xport_t *x, size_t size, size_t n,
		       bool batched)
{
	memset(e, 0, sizeof *e);
	e->name = x->name;
	e->ok = true;
	e->r.x = x;
	e->r.size = size;
	e->r.n = n;
	e->r.batched = batched;
	for (size_t i = 0; i < sizeof e->r.tmpl; i++)
		e->r.tmpl[i] = (uint8_t)(i * 7 + 1);
}

/* A warm-up run of every entry, then o->runs rounds of one run of each,
 * interleaved so that a noisy neighbour hits them all alike. An entry
 * whose run fails drops out (run_once said why on stderr). Latency runs
 * give p50 and p99 of the sorted samples. */
static void measure(const bench_opts_t *o, entry_t *e, size_t ne)
{
	int runs = clamp_runs(o);
	for (int k = -1; k < runs; k++) {
		for (size_t i = 0; i < ne; i++) {
			run_t *r = &e[i].r;
			if (!e[i].ok)
				continue;
			if (run_once(r)) {
				e[i].ok = false;
				continue;
			}
			if (k < 0)
				continue; /* warm-up */
			if (r->lat) {
				size_t n = r->n;
				qsort(r->lat, n, sizeof r->lat[0], cmp_u64);
				e[i].v[k] = (double)r->lat[rank(n, 50)];
				e[i].w[k] = (double)r->lat[rank(n, 99)];
			} else {
				e[i].v[k] = (double)r->n * 1e9 /
					    (double)(r->t1 - r->t0);
			}
		}
	}
}

static size_t scaled(const bench_opts_t *o, double n)
{
	double v = n * o->scale;
	return v < 4 * BATCH ? 4 * BATCH : (size_t)v;
}

/* Message counts per run (times --scale). Where a baseline makes a
 * syscall or an NNG hand-off per message it moves fewer messages than the
 * ring, so the suite ends in about a minute; msgs_per_s is count / time,
 * so the figures still compare. The JSON "n" is the ring's count; stderr
 * lists the others. Unbatched 64 B ring runs move 2M, not 5M: on a
 * 2-vCPU VM they sometimes fall into lock-step (one cache-line round trip
 * per message, ~1M msgs/s) and 5M would then take half a minute. */
typedef struct {
	const char *name;
	size_t size;
	bool batched;
	double n_ring, n_fd, n_nng;
} tcase_t;

static const tcase_t tcases[] = {
	{"spsc_64B", 64, false, 2e6, 2e5, 5e4},
	{"spsc_64B_batched", 64, true, 5e6, 5e6, 5e4},
	{"spsc_1KiB", 1024, false, 1e6, 2e5, 5e4},
	{"spsc_1KiB_batched", 1024, true, 1e6, 1e6, 5e4},
};

/* Latency: 64-byte messages, one per PERIOD_NS. At 2 us a pipe or a
 * socket whose reader sleeps cannot keep up on a 2-vCPU VM (each message
 * pays a wake-up of ~10 us) and the figure turns into queueing delay;
 * 20 us keeps every transport idle between messages. The ring consumer
 * spins SPIN checks and then parks, so at this rate it, too, is woken
 * from the futex for most messages. */
#define LAT_N 25000

/* ---- one thread: the ring's own instruction cost ---- */

typedef struct {
	tlcm_ring_t *ring;
	uint8_t payload[64];
} solo_t;

/* Produce a batch of 64, publish, consume it: no cache line crosses a
 * core, so this is what the ring code itself costs per message. */
static void solo_body(void *arg, size_t n)
{
	solo_t *c = arg;
	const tlcm_msg_t *m[BATCH];
	for (size_t i = 0; i < n; i += BATCH) {
		for (int j = 0; j < BATCH; j++) {
			int err;
			void *p = tlcm_ring_reserve(c->ring, 64, 0, &err);
			memcpy(p, c->payload, 64);
			tlcm_ring_commit_defer(c->ring, p, 64, NULL);
		}
		tlcm_ring_publish(c->ring);
		size_t k = tlcm_ring_peek_many(c->ring, m, BATCH);
		for (size_t j = 0; j < k; j++)
			bench_sink += *(const uint8_t *)tlcm_msg_data(m[j]);
		tlcm_ring_release(c->ring, k);
	}
}

int bench_suite_ring(const bench_opts_t *o)
{
	static entry_t e[4];
	signal(SIGPIPE, SIG_IGN); /* a failed consumer must not kill us */
	int runs = clamp_runs(o), failed = 0;

	for (size_t c = 0; c < sizeof tcases / sizeof tcases[0]; c++) {
		const tcase_t *t = &tcases[c];
		size_t n = scaled(o, t->n_ring), nfd = scaled(o, t->n_fd);
		size_t nnng = scaled(o, t->n_nng);
		bench_base_t base[3];
		size_t nb = 0;
		fprintf(stderr, "ring: %s: ring %zu, pipe/unix %zu, nng %zu "
			"msgs x %d runs\n", t->name, n, nfd, nnng, runs);
		init_entry(&e[0], &x_ring, t->size, n, t->batched);
		init_entry(&e[1], &x_pipe, t->size, nfd, t->batched);
		init_entry(&e[2], &x_unix, t->size, nfd, t->batched);
		init_entry(&e[3], &x_nng, t->size, nnng, t->batched);
		measure(o, e, 4);
		if (!e[0].ok) {
			fprintf(stderr, "ring: %s: the ring failed, no line\n",
				t->name);
			failed = 1;
			continue;
		}
		for (size_t i = 1; i < 4; i++) {
			if (e[i].ok)
				base[nb++] = (bench_base_t){
					e[i].name, bench_median(e[i].v, runs)};
			else
				fprintf(stderr, "ring: %s: no %s baseline (see "
					"above)\n", t->name, e[i].name);
		}
		bench_report("ring", t->name, "msgs_per_s",
			     bench_median(e[0].v, runs), n, runs, base, nb);
	}

	size_t n = scaled(o, LAT_N);
	bench_base_t b50[2], b99[2];
	size_t nb = 0;
	fprintf(stderr, "ring: spsc_64B_latency: ring/pipe/unix, %zu msgs "
		"one per %d ns x %d runs\n", n, PERIOD_NS, runs);
	init_entry(&e[0], &x_ring, 64, n, false);
	init_entry(&e[1], &x_pipe, 64, n, false);
	init_entry(&e[2], &x_unix, 64, n, false);
	for (size_t i = 0; i < 3; i++)
		if (!(e[i].r.lat = malloc(n * sizeof *e[i].r.lat))) {
			fprintf(stderr, "ring: out of memory\n");
			e[i].ok = false;
		}
	measure(o, e, 3);
	for (size_t i = 0; i < 3; i++)
		free(e[i].r.lat);
	if (!e[0].ok) {
		fprintf(stderr, "ring: spsc_64B_latency: the ring failed, no "
			"line\n");
		return -1;
	}
	for (size_t i = 1; i < 3; i++) {
		if (!e[i].ok) {
			fprintf(stderr, "ring: spsc_64B_latency: no %s "
				"baseline (see above)\n", e[i].name);
			continue;
		}
		b50[nb] = (bench_base_t){e[i].name,
					 bench_median(e[i].v, runs)};
		b99[nb++] = (bench_base_t){e[i].name,
					   bench_median(e[i].w, runs)};
	}
	bench_report("ring", "spsc_64B_latency_p50", "ns",
		     bench_median(e[0].v, runs), n, runs, b50, nb);
	bench_report("ring", "spsc_64B_latency_p99", "ns",
		     bench_median(e[0].w, runs), n, runs, b99, nb);

	/* where the two-thread time goes: the same batches on one thread */
	static solo_t solo;
	if (tlcm_ring_create(&solo.ring, RING_CAP, TLCM_EDGE_BLOCK,
			     "tlcm-bench-solo") == 0) {
		size_t sn = (size_t)(5000000 * o->scale) / BATCH * BATCH;
		if (sn < BATCH)
			sn = BATCH;
		double ns = bench_measure(o, sn, solo_body, &solo);
		bench_report("ring", "one_thread_64B_batched", "ns_per_msg", ns,
			     sn, o->runs, NULL, 0);
		tlcm_ring_free(solo.ring);
	}
	return failed ? -1 : 0;
}
