/* test_ring.c — the shared-memory ring: order, content, wrap-around,
 * policies, batching, parking, threads and processes.
 *
 * Every payload is derived from its sequence number and carries a
 * checksum, so the consumer checks content and order of every message.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/ring.h"
#include "tests/tlcm_test.h"

/* payload for message k: size from k, bytes from k, last 4 bytes a sum */
static size_t size_of(uint64_t k, size_t max)
{
	return 8 + (size_t)((k * 2654435761u) % (max - 8 + 1));
}

static void fill(uint8_t *p, uint64_t k, size_t n)
{
	memcpy(p, &k, 8);
	for (size_t i = 8; i < n; i++)
		p[i] = (uint8_t)(k * 31 + i);
}

static bool check(const tlcm_msg_t *m, uint64_t *k_out)
{
	const uint8_t *p = tlcm_msg_data(m);
	uint64_t k;
	if (m->size < 8)
		return false;
	memcpy(&k, p, 8);
	for (size_t i = 8; i < m->size; i++)
		if (p[i] != (uint8_t)(k * 31 + i))
			return false;
	*k_out = k;
	return m->trace == k && memcmp(m->type, "TEST", 4) == 0;
}

static int push_k(tlcm_ring_t *r, uint64_t k, size_t max, int flags)
{
	size_t n = size_of(k, max);
	int err = 0;
	uint8_t *p = tlcm_ring_reserve(r, n, flags, &err);
	if (!p)
		return err;
	fill(p, k, n);
	tlcm_msg_meta_t meta = {.type = "TEST", .trace = k};
	return tlcm_ring_commit(r, p, n, &meta);
}

static void basics(void)
{
	tlcm_ring_t *r;
	CHECK_INT(tlcm_ring_create(&r, 5000, TLCM_EDGE_BLOCK, "t"), 0);
	CHECK_UINT(tlcm_ring_capacity(r), 8192);
	CHECK(tlcm_ring_peek(r) == NULL);
	int err = 0;
	CHECK(tlcm_ring_reserve(r, 8192, 0, &err) == NULL);
	CHECK_INT(err, TLCM_ETOOBIG);
	CHECK_INT(tlcm_ring_commit(r, "x", 1, NULL), TLCM_EINVAL);

	/* every wrap position: message sizes that walk the ring unevenly */
	uint64_t next = 1, expect = 1;
	int bad = 0;
	for (int round = 0; round < 20000; round++) {
		int burst = 1 + round % 7;
		for (int i = 0; i < burst; i++)
			if (push_k(r, next, 300, TLCM_RING_NOWAIT) == 0)
				next++;
		const tlcm_msg_t *m;
		while ((m = tlcm_ring_peek(r))) {
			uint64_t k;
			bad += !check(m, &k) || k != expect || m->seq != expect;
			expect++;
			tlcm_ring_release(r, 1);
		}
	}
	CHECK_INT(bad, 0);
	CHECK_UINT(expect, next);
	CHECK(next > 50000);

	/* a payload built at the end of its reservation is moved to the front */
	uint8_t *p = tlcm_ring_reserve(r, 64, 0, &err);
	CHECK(p != NULL);
	memcpy(p + 40, "tail-built", 10);
	CHECK_INT(tlcm_ring_commit(r, p + 40, 10, NULL), 0);
	const tlcm_msg_t *m = tlcm_ring_peek(r);
	CHECK(m && m->size == 10 && memcmp(tlcm_msg_data(m), "tail-built", 10) == 0);
	CHECK_INT((uintptr_t)tlcm_msg_data(m) % 8, 0);
	tlcm_ring_release(r, 1);

	/* batching: deferred commits are invisible until published */
	for (int i = 0; i < 10; i++) {
		p = tlcm_ring_reserve(r, 8, 0, &err);
		memcpy(p, &i, sizeof i);
		CHECK_INT(tlcm_ring_commit_defer(r, p, sizeof i, NULL), 0);
	}
	CHECK(tlcm_ring_peek(r) == NULL);
	tlcm_ring_publish(r);
	const tlcm_msg_t *ms[16];
	CHECK_UINT(tlcm_ring_peek_many(r, ms, 16), 10);
	int order_ok = 1;
	for (int i = 0; i < 10; i++)
		order_ok &= *(const int *)tlcm_msg_data(ms[i]) == i;
	CHECK(order_ok);
	tlcm_ring_release(r, 4);
	CHECK_UINT(tlcm_ring_peek_many(r, ms, 16), 0);
	tlcm_ring_release(r, 6);

	tlcm_ring_stats_t st;
	tlcm_ring_stats(r, &st);
	CHECK_UINT(st.committed, st.consumed);
	CHECK_UINT(st.used, 0);
	CHECK_UINT(st.dropped, 0);

	/* wait: times out when empty, reports the end after close */
	CHECK_INT(tlcm_ring_wait_data(r, 1000000), TLCM_ETIMEDOUT);
	CHECK_INT(tlcm_ring_push(r, "a", 1, NULL, 0), 0);
	tlcm_ring_close(r);
	CHECK(!tlcm_ring_eos(r));
	CHECK_INT(tlcm_ring_wait_data(r, -1), 0);
	CHECK(tlcm_ring_peek(r) != NULL);
	tlcm_ring_release(r, 1);
	CHECK(tlcm_ring_peek(r) == NULL);
	CHECK(tlcm_ring_eos(r));
	CHECK_INT(tlcm_ring_wait_data(r, -1), TLCM_ECLOSED);
	CHECK(tlcm_ring_reserve(r, 1, 0, &err) == NULL);
	CHECK_INT(err, TLCM_ECLOSED);
	tlcm_ring_free(r);

	CHECK_INT(tlcm_edge_policy_parse("drop_oldest", &(tlcm_edge_policy_t){0}), 0);
	CHECK_INT(tlcm_edge_policy_parse("sometimes", &(tlcm_edge_policy_t){0}),
		  TLCM_EINVAL);
}

static void policies_single_thread(void)
{
	tlcm_ring_t *r;
	int err;
	/* drop_newest: a full ring refuses and counts */
	CHECK_INT(tlcm_ring_create(&r, 4096, TLCM_EDGE_DROP_NEWEST, "dn"), 0);
	uint64_t ok = 0;
	for (uint64_t k = 1; k <= 200; k++)
		ok += push_k(r, k, 100, 0) == 0;
	tlcm_ring_stats_t st;
	tlcm_ring_stats(r, &st);
	CHECK(ok < 200);
	CHECK_UINT(st.dropped, 200 - ok);
	const tlcm_msg_t *m = tlcm_ring_peek(r);
	uint64_t k;
	CHECK(m && check(m, &k) && k == 1); /* the oldest survived */
	tlcm_ring_free(r);

	/* drop_oldest: the newest survive, the oldest go, counted */
	CHECK_INT(tlcm_ring_create(&r, 4096, TLCM_EDGE_DROP_OLDEST, "do"), 0);
	for (uint64_t j = 1; j <= 200; j++)
		CHECK_INT(push_k(r, j, 100, 0), 0);
	tlcm_ring_stats(r, &st);
	uint64_t last = 0, n = 0;
	int bad = 0;
	while ((m = tlcm_ring_peek(r))) {
		bad += !check(m, &k) || k <= last;
		last = k;
		n++;
		tlcm_ring_release(r, 1);
	}
	CHECK_INT(bad, 0);
	CHECK_UINT(last, 200);
	CHECK_UINT(st.dropped + n, 200);
	CHECK(st.dropped > 0);
	/* a message the consumer holds is never taken away */
	CHECK_INT(push_k(r, 1000, 100, 0), 0);
	m = tlcm_ring_peek(r);
	CHECK(m != NULL);
	for (uint64_t j = 1001; j < 1100; j++)
		push_k(r, j, 100, 0);
	CHECK(m && check(m, &k) && k == 1000);
	tlcm_ring_release(r, 1);
	tlcm_ring_free(r);
	(void)err;
}

/* ---- threads ---- */

typedef struct {
	tlcm_ring_t *r;
	uint64_t n;
	size_t max;
	bool batch;
} prod_t;

static void *producer(void *arg)
{
	prod_t *p = arg;
	for (uint64_t k = 1; k <= p->n; k++) {
		if (p->batch && k % 16) {
			size_t n = size_of(k, p->max);
			int err;
			uint8_t *d = tlcm_ring_reserve(p->r, n, 0, &err);
			if (d) {
				fill(d, k, n);
				tlcm_msg_meta_t meta = {.type = "TEST", .trace = k};
				tlcm_ring_commit_defer(p->r, d, n, &meta);
			}
		} else {
			push_k(p->r, k, p->max, 0);
		}
	}
	tlcm_ring_close(p->r);
	return NULL;
}

static void threads(tlcm_edge_policy_t pol, bool batch, uint64_t n)
{
	tlcm_ring_t *r;
	CHECK_INT(tlcm_ring_create(&r, 16384, pol, "th"), 0);
	prod_t p = {r, n, 600, batch};
	pthread_t t;
	pthread_create(&t, NULL, producer, &p);
	uint64_t last = 0, got = 0;
	int bad = 0;
	for (;;) {
		const tlcm_msg_t *ms[32];
		size_t k = tlcm_ring_peek_many(r, ms, 1 + got % 32);
		for (size_t i = 0; i < k; i++) {
			uint64_t v = 0; /* check() leaves it on a short message */
			bool ok = check(ms[i], &v);
			bad += !ok || v <= last ||
			       (pol == TLCM_EDGE_BLOCK && v != last + 1);
			last = v;
			got++;
		}
		tlcm_ring_release(r, k);
		if (!k && tlcm_ring_wait_data(r, -1) == TLCM_ECLOSED)
			break;
	}
	pthread_join(t, NULL);
	tlcm_ring_stats_t st;
	tlcm_ring_stats(r, &st);
	CHECK_INT(bad, 0);
	if (pol == TLCM_EDGE_BLOCK) {
		CHECK_UINT(got, n);
		CHECK_UINT(st.dropped, 0);
	}
	CHECK_UINT(got + st.dropped, n);
	CHECK_UINT(st.consumed, got);
	fprintf(stderr, "threads %s%s: %llu received, %llu dropped\n",
		tlcm_edge_policy_name(pol), batch ? " batched" : "",
		(unsigned long long)got, (unsigned long long)st.dropped);
	tlcm_ring_free(r);
}

/* ---- processes ---- */

static void processes(void)
{
	tlcm_ring_t *r;
	CHECK_INT(tlcm_ring_create(&r, 8192, TLCM_EDGE_BLOCK, "px"), 0);
	const uint64_t n = 200000;
	pid_t pid = fork();
	if (pid == 0) {
		tlcm_ring_t *c;
		if (tlcm_ring_attach(&c, tlcm_ring_fd(r)) != 0)
			_exit(3);
		prod_t p = {c, n, 500, true};
		producer(&p);
		tlcm_ring_free(c);
		_exit(0);
	}
	uint64_t last = 0, got = 0;
	int bad = 0;
	for (;;) {
		const tlcm_msg_t *m = tlcm_ring_peek(r);
		if (!m) {
			if (tlcm_ring_wait_data(r, -1) == TLCM_ECLOSED)
				break;
			continue;
		}
		uint64_t v = 0;
		bad += !check(m, &v) || v != last + 1;
		last = v;
		got++;
		tlcm_ring_release(r, 1);
	}
	int status;
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(bad, 0);
	CHECK_UINT(got, n);

	/* a foreign fd is refused */
	int fd = memfd_create("junk", 0);
	CHECK_INT(ftruncate(fd, 8192), 0);
	tlcm_ring_t *j;
	CHECK_INT(tlcm_ring_attach(&j, fd), TLCM_ECORRUPT);
	close(fd);
	tlcm_ring_free(r);
}

/* ---- parking: a parked consumer uses no CPU ---- */

static void *idle_waiter(void *arg)
{
	tlcm_ring_t *r = arg;
	struct rusage a, b;
	getrusage(RUSAGE_THREAD, &a);
	int rc = tlcm_ring_wait_data(r, 300 * 1000000ll);
	getrusage(RUSAGE_THREAD, &b);
	long us = (b.ru_utime.tv_sec - a.ru_utime.tv_sec) * 1000000 +
		  (b.ru_utime.tv_usec - a.ru_utime.tv_usec) +
		  (b.ru_stime.tv_sec - a.ru_stime.tv_sec) * 1000000 +
		  (b.ru_stime.tv_usec - a.ru_stime.tv_usec);
	/* a spinning waiter would burn ~300 ms of CPU */
	CHECK_INT(rc, TLCM_ETIMEDOUT);
	CHECK(us < 100000);
	return NULL;
}

static void parking(void)
{
	tlcm_ring_t *r;
	tlcm_ring_create(&r, 4096, TLCM_EDGE_BLOCK, "idle");
	pthread_t t;
	pthread_create(&t, NULL, idle_waiter, r);
	pthread_join(t, NULL);
	tlcm_ring_free(r);
}

#ifdef TLCM_SANITIZED
#define N_THREADED 60000 /* sanitizers are 10-20x slower */
#else
#define N_THREADED 300000
#endif

int main(void)
{
	basics();
	policies_single_thread();
	threads(TLCM_EDGE_BLOCK, false, N_THREADED);
	threads(TLCM_EDGE_BLOCK, true, N_THREADED);
	threads(TLCM_EDGE_DROP_NEWEST, false, N_THREADED);
	threads(TLCM_EDGE_DROP_OLDEST, false, N_THREADED);
	threads(TLCM_EDGE_DROP_OLDEST, true, N_THREADED);
	processes();
	parking();
	return tlcm_test_done();
}
