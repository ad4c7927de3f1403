/* ring.c — shared-memory SPSC message ring (see ring.h).
 *
 * Positions are 64-bit byte counters that only grow; the slot of position p
 * is at data + (p & mask). The producer owns `head`; the consumer owns
 * `tail` (space given back) and `rd` (next message to peek), with plain
 * loads and stores. Under drop_oldest the producer may also take messages
 * at `rd` away from the consumer: then `rd`, `tail` and the done-marks in
 * slot headers change only under a small spinlock in the segment (held
 * for a few loads and stores, never across a syscall), so neither side
 * ever frees or reads a slot the other is using.
 *
 * Parking uses the classic event-count pattern on futex words inside the
 * segment, so it works across processes: the waiter announces itself,
 * re-checks, then sleeps; the other side wakes only announced waiters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine/cpu.h"
#include "engine/ring.h"

#define RING_MAGIC 0x544c524eu /* "TLRN" */
#define RING_VERSION 1
#define LINE 64
#define MIN_CAP 4096u
#define MAX_CAP ((size_t)1 << 30)

#define F_DONE 1u    /* released or dropped: tail may pass */
#define F_PAD 2u     /* wrap padding, never peeked */

/* The shared segment: a header page, then the data. */
typedef struct ring_shm {
	/* constant after creation */
	uint32_t magic, version;
	uint64_t cap;
	uint32_t policy;
	_Atomic uint32_t closed;   /* producer: no more messages */
	_Atomic uint32_t detached; /* consumer: gone, stop producing */
	/* producer line */
	_Alignas(LINE) _Atomic uint64_t head;
	_Atomic uint32_t data_seq;     /* futex: bumped to wake the consumer */
	_Atomic uint32_t cons_waiting; /* consumer parked or armed */
	_Atomic uint64_t committed, dropped, full, bytes;
	/* consumer line */
	_Alignas(LINE) _Atomic uint64_t tail;
	_Atomic uint64_t rd; /* shared only under drop_oldest */
	_Atomic uint32_t space_seq;    /* futex: bumped to wake the producer */
	_Atomic uint32_t prod_waiting; /* producer parked or armed */
	_Atomic uint64_t consumed;
	_Atomic uint64_t space_need;   /* bytes the armed producer waits for */
	_Atomic uint32_t lock;         /* drop_oldest only, see top */
} ring_shm_t;

_Static_assert(sizeof(ring_shm_t) == 3 * LINE, "ring header layout");
_Static_assert(offsetof(ring_shm_t, tail) == 2 * LINE, "ring lines");
_Static_assert(sizeof(tlcm_msg_t) == 40, "message header layout");

#define DATA_OFF 4096 /* data starts on its own page */

struct tlcm_ring {
	ring_shm_t *shm;
	uint8_t *data;
	size_t map_len;
	uint64_t mask;
	int fd;
	tlcm_edge_policy_t policy;
	/* producer-local */
	uint64_t p_head;        /* next write position (maybe unpublished) */
	uint64_t p_tail_cache;
	uint64_t p_seq;
	uint64_t p_resv;        /* position of the open reservation */
	size_t p_resv_max;
	uint64_t p_pending;     /* committed but unpublished messages */
	uint64_t p_ts;          /* timestamp of the batch being committed */
	uint64_t p_pending_bytes;
	/* consumer-local */
	uint64_t c_rd;          /* next message to peek */
	uint64_t c_head_cache;
	uint64_t c_peeked[64];  /* ring buffer of peeked slot positions */
	unsigned c_npeeked, c_first;
	/* notification hooks (this process only) */
	void (*notify)(void *);
	void *notify_arg;
	void (*space_notify)(void *);
	void *space_arg;
};

static const char *policy_names[] = {"block", "drop_oldest", "drop_newest"};

const char *tlcm_edge_policy_name(tlcm_edge_policy_t p)
{
	return (unsigned)p < 3 ? policy_names[p] : "?";
}

int tlcm_edge_policy_parse(const char *s, tlcm_edge_policy_t *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (s && strcmp(s, policy_names[i]) == 0) {
			*out = (tlcm_edge_policy_t)i;
			return 0;
		}
	return TLCM_EINVAL;
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val,
		  const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static inline tlcm_msg_t *slot(const tlcm_ring_t *r, uint64_t pos)
{
	return (tlcm_msg_t *)(r->data + (pos & r->mask));
}

/* Map a ring's segment, every page of it: the segment's memory was
 * allocated when the ring was created (fallocate), and MAP_POPULATE puts
 * it in the page table now, so the data path never takes a page fault
 * (on a virtual machine a fault costs microseconds: a message's worth). */
static int map(tlcm_ring_t *r, int fd, size_t cap)
{
	r->map_len = DATA_OFF + cap;
	void *p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED)
		return errno == ENOMEM ? TLCM_ENOMEM : TLCM_EIO;
	r->shm = p;
	r->data = (uint8_t *)p + DATA_OFF;
	r->mask = cap - 1;
	r->fd = fd;
	return 0;
}

int tlcm_ring_create(tlcm_ring_t **out, size_t cap, tlcm_edge_policy_t policy,
		     const char *name)
{
	*out = NULL;
	if ((unsigned)policy > TLCM_EDGE_DROP_NEWEST || cap > MAX_CAP)
		return TLCM_EINVAL;
	size_t c = MIN_CAP;
	while (c < cap)
		c <<= 1;
	tlcm_ring_t *r = calloc(1, sizeof *r);
	if (!r)
		return TLCM_ENOMEM;
	/* The whole segment is allocated here, so a machine short of memory
	 * fails the graph's start with ENOMEM instead of killing it with
	 * SIGBUS at the first touch of a page it cannot have. */
	int fd = memfd_create(name ? name : "tlcm-ring", MFD_CLOEXEC);
	int rc = fd < 0 ? TLCM_EIO : 0;
	if (!rc && ftruncate(fd, (off_t)(DATA_OFF + c)) != 0)
		rc = TLCM_EIO;
	if (!rc && fallocate(fd, 0, 0, (off_t)(DATA_OFF + c)) != 0)
		rc = errno == ENOSPC || errno == ENOMEM ? TLCM_ENOMEM
							: TLCM_EIO;
	if (rc) {
		if (fd >= 0)
			close(fd);
		free(r);
		return rc;
	}
	rc = map(r, fd, c);
	if (rc) {
		close(fd);
		free(r);
		return rc;
	}
	r->shm->magic = RING_MAGIC;
	r->shm->version = RING_VERSION;
	r->shm->cap = c;
	r->shm->policy = policy;
	r->policy = policy;
	r->p_resv_max = (size_t)-1; /* no open reservation */
	*out = r;
	return 0;
}

int tlcm_ring_attach(tlcm_ring_t **out, int fd)
{
	*out = NULL;
	ring_shm_t hdr;
	if (pread(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
		return TLCM_EIO;
	if (hdr.magic != RING_MAGIC || hdr.version != RING_VERSION ||
	    hdr.cap < MIN_CAP || hdr.cap > MAX_CAP ||
	    (hdr.cap & (hdr.cap - 1)) || hdr.policy > TLCM_EDGE_DROP_NEWEST)
		return TLCM_ECORRUPT;
	tlcm_ring_t *r = calloc(1, sizeof *r);
	if (!r)
		return TLCM_ENOMEM;
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	int rc = dfd < 0 ? TLCM_EIO : map(r, dfd, hdr.cap);
	if (rc) {
		if (dfd >= 0)
			close(dfd);
		free(r);
		return rc;
	}
	r->policy = (tlcm_edge_policy_t)r->shm->policy;
	/* pick up both sides' positions; each side is used by one party */
	r->p_head = atomic_load(&r->shm->head);
	r->p_tail_cache = atomic_load(&r->shm->tail);
	r->p_seq = atomic_load(&r->shm->committed);
	r->c_rd = atomic_load(&r->shm->rd);
	if (r->c_rd < r->p_tail_cache)
		r->c_rd = r->p_tail_cache;
	r->c_head_cache = r->p_head;
	r->p_resv_max = (size_t)-1;
	*out = r;
	return 0;
}

static void lock(struct ring_shm *s);
static void unlock(struct ring_shm *s);

void tlcm_ring_resync(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	r->p_head = atomic_load(&s->head);
	r->p_tail_cache = atomic_load(&s->tail);
	r->p_seq = atomic_load(&s->committed);
	r->p_pending = 0;
	r->p_pending_bytes = 0;
	r->p_resv_max = (size_t)-1;
	if (r->policy == TLCM_EDGE_DROP_OLDEST) {
		/* what the dead consumer claimed is offered again; slots the
		 * producer dropped meanwhile are marked done and skipped */
		lock(s);
		atomic_store(&s->rd, atomic_load(&s->tail));
		unlock(s);
	}
	r->c_rd = r->p_tail_cache;
	r->c_head_cache = r->p_head;
	r->c_npeeked = 0;
	r->c_first = 0;
}

void tlcm_ring_free(tlcm_ring_t *r)
{
	if (!r)
		return;
	munmap(r->shm, r->map_len);
	close(r->fd);
	free(r);
}

int tlcm_ring_fd(const tlcm_ring_t *r)
{
	return r->fd;
}

size_t tlcm_ring_capacity(const tlcm_ring_t *r)
{
	return (size_t)r->mask + 1;
}

tlcm_edge_policy_t tlcm_ring_policy(const tlcm_ring_t *r)
{
	return r->policy;
}

size_t tlcm_ring_max_payload(const tlcm_ring_t *r)
{
	/* a message may need to wait for a wrap: keep it under half */
	return tlcm_ring_capacity(r) / 2 - TLCM_MSG_HDR;
}

/* ---- drop_oldest: shared rd/tail under the segment's spinlock ----------- */


static void lock(struct ring_shm *s)
{
	for (unsigned spins = 0; atomic_exchange_explicit(
		     &s->lock, 1, memory_order_acquire);
	     spins++) {
		if (spins > 64)
			sched_yield();
		else
			tlcm_cpu_relax();
	}
}

static void unlock(struct ring_shm *s)
{
	atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* Under the lock: move tail over consecutive done slots below rd. */
static void advance_tail(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
	uint64_t rd = atomic_load_explicit(&s->rd, memory_order_relaxed);
	while (t < rd) {
		tlcm_msg_t *m = slot(r, t);
		if (!(atomic_load_explicit(&m->flags, memory_order_relaxed) &
		      F_DONE))
			break;
		t += atomic_load_explicit(&m->len, memory_order_relaxed);
	}
	atomic_store(&s->tail, t);
}

/* Under the lock: take the message at rd, or return false when there is
 * none. *flags receives its flags. */
static bool take(tlcm_ring_t *r, uint64_t *pos, uint32_t *flags)
{
	ring_shm_t *s = r->shm;
	uint64_t p = atomic_load_explicit(&s->rd, memory_order_relaxed);
	if (p >= atomic_load_explicit(&s->head, memory_order_acquire))
		return false;
	tlcm_msg_t *m = slot(r, p);
	*flags = atomic_load_explicit(&m->flags, memory_order_relaxed);
	atomic_store(&s->rd, p + atomic_load_explicit(&m->len,
						      memory_order_relaxed));
	*pos = p;
	return true;
}

/* ---- producer ------------------------------------------------------------ */

/* Called after a seq_cst store of head (or closed): with the consumer's
 * seq_cst store of cons_waiting before its seq_cst re-read of head, one of
 * the two sides always sees the other (no fences: TSan cannot model them). */
static void wake_consumer(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	if (atomic_load(&s->cons_waiting)) {
		if (atomic_exchange(&s->cons_waiting, 0)) {
			atomic_fetch_add(&s->data_seq, 1);
			futex(&s->data_seq, FUTEX_WAKE, INT32_MAX, NULL);
			if (r->notify)
				r->notify(r->notify_arg);
		}
	}
}

void tlcm_ring_publish(tlcm_ring_t *r)
{
	if (!r->p_pending)
		return;
	ring_shm_t *s = r->shm;
	/* single writer: plain stores, no read-modify-write */
	atomic_store_explicit(&s->committed,
			      atomic_load_explicit(&s->committed,
						   memory_order_relaxed) +
				      r->p_pending,
			      memory_order_relaxed);
	atomic_store_explicit(&s->bytes,
			      atomic_load_explicit(&s->bytes,
						   memory_order_relaxed) +
				      r->p_pending_bytes,
			      memory_order_relaxed);
	r->p_pending = 0;
	r->p_pending_bytes = 0;
	atomic_store(&s->head, r->p_head);
	wake_consumer(r);
}

static uint64_t free_bytes(tlcm_ring_t *r)
{
	return tlcm_ring_capacity(r) - (r->p_head - r->p_tail_cache);
}

/* Under drop_oldest: take the oldest message the consumer has not peeked.
 * False when the consumer holds everything. */
static bool drop_one(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	uint64_t pos;
	uint32_t f;
	lock(s);
	bool got = take(r, &pos, &f);
	if (got) {
		if (!(f & (F_PAD | F_DONE))) /* not padding, not dropped */
			atomic_fetch_add(&s->dropped, 1);
		atomic_fetch_or(&slot(r, pos)->flags, F_DONE);
		advance_tail(r);
	}
	unlock(s);
	return got;
}

/* Wait until need bytes are free (block policy); timeout_ns < 0: forever. */
static int wait_space(tlcm_ring_t *r, uint64_t need, int64_t timeout_ns)
{
	ring_shm_t *s = r->shm;
	uint64_t deadline = timeout_ns < 0 ? 0 : now_ns() + (uint64_t)timeout_ns;
	int rc = 0;
	/* hysteresis: be woken once a quarter of the ring is free, not for
	 * every message the consumer releases */
	uint64_t want = tlcm_ring_capacity(r) / 4;
	if (want < need)
		want = need;
	while (free_bytes(r) < need) {
		uint32_t seq = atomic_load(&s->space_seq);
		atomic_store(&s->space_need, want);
		atomic_store(&s->prod_waiting, 1);
		r->p_tail_cache = atomic_load(&s->tail);
		if (free_bytes(r) >= need)
			break;
		if (atomic_load(&s->closed) || atomic_load(&s->detached)) {
			rc = TLCM_ECLOSED;
			break;
		}
		/* re-check 10 times a second even without a wake-up */
		uint64_t left = 100 * 1000 * 1000;
		if (timeout_ns >= 0) {
			uint64_t now = now_ns();
			if (now >= deadline) {
				rc = TLCM_ETIMEDOUT;
				break;
			}
			if (deadline - now < left)
				left = deadline - now;
		}
		struct timespec ts = {(time_t)(left / 1000000000u),
				      (long)(left % 1000000000u)};
		futex(&s->space_seq, FUTEX_WAIT, seq, &ts);
		r->p_tail_cache = atomic_load(&s->tail);
	}
	atomic_store(&s->prod_waiting, 0);
	return rc;
}

/* Bytes a reservation of max needs from the current head, padding
 * included. */
static uint64_t need_for(tlcm_ring_t *r, size_t max)
{
	uint64_t need = TLCM_MSG_HDR + align8(max);
	uint64_t to_end = tlcm_ring_capacity(r) - (r->p_head & r->mask);
	return to_end < need ? to_end + need : need;
}

int tlcm_ring_wait_space(tlcm_ring_t *r, size_t max, int64_t timeout_ns)
{
	if (max > tlcm_ring_max_payload(r))
		return TLCM_ETOOBIG;
	return wait_space(r, need_for(r, max), timeout_ns);
}

void tlcm_ring_detach(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	atomic_store(&s->detached, 1);
	atomic_fetch_add(&s->space_seq, 1);
	futex(&s->space_seq, FUTEX_WAKE, INT32_MAX, NULL);
	if (r->space_notify)
		r->space_notify(r->space_arg);
}

void *tlcm_ring_reserve(tlcm_ring_t *r, size_t max, int flags, int *err)
{
	ring_shm_t *s = r->shm;
	int e = 0;
	if (max > tlcm_ring_max_payload(r)) {
		e = TLCM_ETOOBIG;
		goto fail;
	}
	if (atomic_load_explicit(&s->closed, memory_order_relaxed) ||
	    atomic_load_explicit(&s->detached, memory_order_relaxed)) {
		e = TLCM_ECLOSED;
		goto fail;
	}
	size_t cap = tlcm_ring_capacity(r);
	uint64_t need = TLCM_MSG_HDR + align8(max);
	uint64_t to_end = cap - (r->p_head & r->mask);
	uint64_t total = to_end < need ? to_end + need : need;
	if (free_bytes(r) < total) {
		r->p_tail_cache = atomic_load_explicit(&s->tail,
						       memory_order_acquire);
		if (free_bytes(r) < total) {
			atomic_fetch_add_explicit(&s->full, 1,
						  memory_order_relaxed);
			tlcm_ring_publish(r); /* never wait on our own backlog */
			if (r->policy == TLCM_EDGE_DROP_NEWEST) {
				atomic_fetch_add(&s->dropped, 1);
				e = TLCM_EAGAIN;
				goto fail;
			}
			if (r->policy == TLCM_EDGE_DROP_OLDEST) {
				while (free_bytes(r) < total) {
					if (!drop_one(r)) {
						/* consumer holds it all */
						atomic_fetch_add(&s->dropped, 1);
						e = TLCM_EAGAIN;
						goto fail;
					}
					r->p_tail_cache = atomic_load(&s->tail);
				}
			} else if (flags & TLCM_RING_NOWAIT) {
				e = TLCM_EAGAIN;
				goto fail;
			} else if ((e = wait_space(r, total, -1))) {
				goto fail;
			}
		}
	}
	if (to_end < need) { /* pad to the end, start over at 0 */
		tlcm_msg_t *pad = slot(r, r->p_head);
		atomic_store_explicit(&pad->len, (uint32_t)to_end,
				      memory_order_relaxed);
		atomic_store_explicit(&pad->flags, F_PAD | F_DONE,
				      memory_order_relaxed);
		r->p_head += to_end;
	}
	r->p_resv = r->p_head;
	r->p_resv_max = max;
	return (uint8_t *)slot(r, r->p_head) + TLCM_MSG_HDR;
fail:
	if (err)
		*err = e;
	return NULL;
}

int tlcm_ring_commit_defer(tlcm_ring_t *r, const void *data, size_t size,
			   const tlcm_msg_meta_t *meta)
{
	tlcm_msg_t *m = slot(r, r->p_resv);
	uint8_t *start = (uint8_t *)m + TLCM_MSG_HDR;
	const uint8_t *d = data;
	if (r->p_resv_max == (size_t)-1 || size > r->p_resv_max ||
	    (size && (d < start || d + size > start + r->p_resv_max)))
		return TLCM_EINVAL;
	if (size && d != start)
		memmove(start, d, size);
	size_t len = TLCM_MSG_HDR + align8(size);
	m->size = (uint32_t)size;
	/* one clock read per published batch: the first commit stamps it */
	if (r->p_pending == 0)
		r->p_ts = now_ns();
	if (meta) {
		memcpy(m->type, meta->type, 4);
		m->ts_ns = meta->ts_ns ? meta->ts_ns : r->p_ts;
		m->trace = meta->trace;
	} else {
		memset(m->type, 0, 4);
		m->ts_ns = r->p_ts;
		m->trace = 0;
	}
	m->seq = ++r->p_seq;
	atomic_store_explicit(&m->flags,
			      meta ? meta->flags & TLCM_MSG_VERIFIED : 0,
			      memory_order_relaxed);
	atomic_store_explicit(&m->len, (uint32_t)len, memory_order_relaxed);
	r->p_head += len;
	r->p_resv_max = (size_t)-1;
	r->p_pending++;
	r->p_pending_bytes += size;
	return 0;
}

int tlcm_ring_commit(tlcm_ring_t *r, const void *data, size_t size,
		     const tlcm_msg_meta_t *meta)
{
	int rc = tlcm_ring_commit_defer(r, data, size, meta);
	if (rc == 0)
		tlcm_ring_publish(r);
	return rc;
}

int tlcm_ring_push(tlcm_ring_t *r, const void *data, size_t size,
		   const tlcm_msg_meta_t *meta, int flags)
{
	int err = 0;
	void *p = tlcm_ring_reserve(r, size, flags, &err);
	if (!p)
		return err;
	if (size)
		memcpy(p, data, size);
	return tlcm_ring_commit(r, p, size, meta);
}

void tlcm_ring_close(tlcm_ring_t *r)
{
	tlcm_ring_publish(r);
	ring_shm_t *s = r->shm;
	atomic_store(&s->closed, 1);
	atomic_store(&s->cons_waiting, 1); /* force the wake below */
	wake_consumer(r);
	atomic_fetch_add(&s->space_seq, 1);
	futex(&s->space_seq, FUTEX_WAKE, INT32_MAX, NULL);
}

/* ---- consumer ------------------------------------------------------------ */

/* Called after a seq_cst update of tail; pairs like wake_consumer(). */
static void wake_producer(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	if (!atomic_load(&s->prod_waiting))
		return;
	uint64_t used = atomic_load(&s->head) - atomic_load(&s->tail);
	if (tlcm_ring_capacity(r) - used < atomic_load(&s->space_need))
		return;
	if (atomic_exchange(&s->prod_waiting, 0)) {
		atomic_fetch_add(&s->space_seq, 1);
		futex(&s->space_seq, FUTEX_WAKE, INT32_MAX, NULL);
		if (r->space_notify)
			r->space_notify(r->space_arg);
	}
}

/* Next message position at or after the consumer's read position, skipping
 * padding; claims it under drop_oldest. Returns false when empty. */
static bool claim(tlcm_ring_t *r, uint64_t *pos_out)
{
	ring_shm_t *s = r->shm;
	if (r->policy == TLCM_EDGE_DROP_OLDEST) {
		for (;;) {
			uint64_t pos;
			uint32_t f;
			lock(s);
			bool got = take(r, &pos, &f);
			if (got && (f & (F_PAD | F_DONE)))
				advance_tail(r); /* padding, or dropped */
			unlock(s);
			if (!got)
				return false;
			if (!(f & (F_PAD | F_DONE))) {
				*pos_out = pos;
				return true;
			}
		}
	}
	for (;;) {
		uint64_t pos = r->c_rd;
		if (pos >= r->c_head_cache) {
			r->c_head_cache = atomic_load_explicit(
				&s->head, memory_order_acquire);
			if (pos >= r->c_head_cache)
				return false;
		}
		tlcm_msg_t *m = slot(r, pos);
		uint32_t len = atomic_load_explicit(&m->len,
						    memory_order_relaxed);
		uint32_t f = atomic_load_explicit(&m->flags,
						  memory_order_relaxed);
		r->c_rd = pos + len;
		if (f & F_PAD) {
			/* nothing held: give the padding back now */
			if (r->c_npeeked == 0)
				atomic_store(&s->tail, r->c_rd);
			continue;
		}
		*pos_out = pos;
		return true;
	}
}

size_t tlcm_ring_peek_many(tlcm_ring_t *r, const tlcm_msg_t **msgs,
			   size_t max)
{
	size_t n = 0;
	while (n < max && r->c_npeeked < 64) {
		uint64_t pos;
		if (!claim(r, &pos))
			break;
		r->c_peeked[(r->c_first + r->c_npeeked++) & 63] = pos;
		msgs[n++] = slot(r, pos);
	}
	return n;
}

const tlcm_msg_t *tlcm_ring_peek(tlcm_ring_t *r)
{
	const tlcm_msg_t *m;
	return tlcm_ring_peek_many(r, &m, 1) ? m : NULL;
}

void tlcm_ring_release(tlcm_ring_t *r, size_t n)
{
	ring_shm_t *s = r->shm;
	if (n > r->c_npeeked)
		n = r->c_npeeked;
	if (n == 0)
		return;
	if (r->policy == TLCM_EDGE_DROP_OLDEST) {
		lock(s);
		for (size_t i = 0; i < n; i++) {
			tlcm_msg_t *m = slot(r, r->c_peeked[(r->c_first + i) & 63]);
			atomic_fetch_or(&m->flags, F_DONE);
		}
		advance_tail(r);
		unlock(s);
		r->c_first = (r->c_first + (unsigned)n) & 63;
		r->c_npeeked -= (unsigned)n;
	} else {
		r->c_first = (r->c_first + (unsigned)n) & 63;
		r->c_npeeked -= (unsigned)n;
		uint64_t t = r->c_npeeked ? r->c_peeked[r->c_first] : r->c_rd;
		atomic_store(&s->tail, t);
	}
	atomic_store_explicit(&s->consumed,
			      atomic_load_explicit(&s->consumed,
						   memory_order_relaxed) + n,
			      memory_order_relaxed);
	wake_producer(r);
}

bool tlcm_ring_readable(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	uint64_t pos = r->policy == TLCM_EDGE_DROP_OLDEST ? atomic_load(&s->rd)
							   : r->c_rd;
	if (pos < r->c_head_cache)
		return true;
	r->c_head_cache = atomic_load_explicit(&s->head, memory_order_acquire);
	return pos < r->c_head_cache; /* may be only padding: peek says */
}

bool tlcm_ring_eos(tlcm_ring_t *r)
{
	/* close() publishes before it sets closed, so once closed is seen,
	 * every message is visible to readable(). Trailing padding may make
	 * readable() true with nothing to peek: callers peek until NULL
	 * before asking. */
	return atomic_load(&r->shm->closed) && r->c_npeeked == 0 &&
	       !tlcm_ring_readable(r);
}

/* readable() with a seq_cst load of head, for the wake-up handshake. */
static bool readable_sc(tlcm_ring_t *r)
{
	ring_shm_t *s = r->shm;
	uint64_t pos = r->policy == TLCM_EDGE_DROP_OLDEST ? atomic_load(&s->rd)
							   : r->c_rd;
	r->c_head_cache = atomic_load(&s->head);
	return pos < r->c_head_cache;
}

int tlcm_ring_wait_data(tlcm_ring_t *r, int64_t timeout_ns)
{
	ring_shm_t *s = r->shm;
	uint64_t deadline = timeout_ns < 0 ? 0 : now_ns() + (uint64_t)timeout_ns;
	for (;;) {
		if (tlcm_ring_readable(r))
			return 0;
		uint32_t seq = atomic_load(&s->data_seq);
		atomic_store(&s->cons_waiting, 1);
		if (readable_sc(r)) {
			atomic_store(&s->cons_waiting, 0);
			return 0;
		}
		if (atomic_load(&s->closed))
			return TLCM_ECLOSED;
		struct timespec ts, *tp = NULL;
		if (timeout_ns >= 0) {
			uint64_t now = now_ns();
			if (now >= deadline)
				return TLCM_ETIMEDOUT;
			uint64_t left = deadline - now;
			ts.tv_sec = (time_t)(left / 1000000000u);
			ts.tv_nsec = (long)(left % 1000000000u);
			tp = &ts;
		}
		futex(&s->data_seq, FUTEX_WAIT, seq, tp);
	}
}

void tlcm_ring_set_notify(tlcm_ring_t *r, void (*fn)(void *), void *arg)
{
	r->notify = fn;
	r->notify_arg = arg;
}

bool tlcm_ring_arm(tlcm_ring_t *r)
{
	/* shared state only (see ring.h): with nothing held, the consumer's
	 * read position is tail (or rd under drop_oldest) */
	ring_shm_t *s = r->shm;
	atomic_store(&s->cons_waiting, 1);
	uint64_t pos = r->policy == TLCM_EDGE_DROP_OLDEST ? atomic_load(&s->rd)
							   : atomic_load(&s->tail);
	if (atomic_load(&s->head) > pos || atomic_load(&s->closed)) {
		atomic_store(&s->cons_waiting, 0);
		return true;
	}
	return false;
}

void tlcm_ring_set_space_notify(tlcm_ring_t *r, void (*fn)(void *), void *arg)
{
	r->space_notify = fn;
	r->space_arg = arg;
}

bool tlcm_ring_arm_space(tlcm_ring_t *r, size_t need)
{
	/* shared state only (see ring.h): nothing unpublished is pending */
	ring_shm_t *s = r->shm;
	atomic_store(&s->space_need, need);
	atomic_store(&s->prod_waiting, 1);
	uint64_t used = atomic_load(&s->head) - atomic_load(&s->tail);
	if (tlcm_ring_capacity(r) - used >= need || atomic_load(&s->closed) ||
	    atomic_load(&s->detached)) {
		atomic_store(&s->prod_waiting, 0);
		return true;
	}
	return false;
}

bool tlcm_ring_writable(tlcm_ring_t *r, size_t need)
{
	if (atomic_load_explicit(&r->shm->detached, memory_order_relaxed))
		return true; /* reservations fail fast: nothing to wait for */
	uint64_t total = 2 * (TLCM_MSG_HDR + align8(need)); /* room to wrap */
	if (free_bytes(r) >= total)
		return true;
	r->p_tail_cache = atomic_load_explicit(&r->shm->tail,
					       memory_order_acquire);
	return free_bytes(r) >= total;
}

void tlcm_ring_stats(const tlcm_ring_t *r, tlcm_ring_stats_t *st)
{
	ring_shm_t *s = r->shm;
	st->committed = atomic_load(&s->committed);
	st->consumed = atomic_load(&s->consumed);
	st->dropped = atomic_load(&s->dropped);
	st->full = atomic_load(&s->full);
	st->bytes = atomic_load(&s->bytes);
	st->used = (size_t)(atomic_load(&s->head) - atomic_load(&s->tail));
	st->capacity = tlcm_ring_capacity(r);
}
