/* io.c — per-thread io_uring with a syscall fallback (see io.h).
 *
 * A thread's ring is set up on first use with a small queue and torn down
 * when the thread exits (pthread key destructor). Each call prepares one or
 * more linked requests, submits them together and waits for their
 * completions; short reads are returned as such (callers loop), short
 * writes are continued here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/io.h"
#include "engine/log.h"

#define QUEUE 16

typedef struct {
	struct io_uring ring;
	bool ok;
} tring_t;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t submissions, fallbacks;
static _Atomic bool uring_ok, warned, force_fallback;

static void destroy(void *p)
{
	tring_t *t = p;
	if (t->ok)
		io_uring_queue_exit(&t->ring);
	free(t);
}

static void make_key(void)
{
	pthread_key_create(&key, destroy);
}

/* This thread's ring, or NULL to use syscalls. */
static struct io_uring *ring(void)
{
	pthread_once(&once, make_key);
	tring_t *t = pthread_getspecific(key);
	if (!t) {
		t = calloc(1, sizeof *t);
		if (!t)
			return NULL;
		int rc = atomic_load(&force_fallback)
				 ? -ENOSYS
				 : io_uring_queue_init(QUEUE, &t->ring, 0);
		t->ok = rc == 0;
		atomic_store(&uring_ok, t->ok);
		if (!t->ok && !atomic_exchange(&warned, true))
			tlcm_warn("io", "io_uring unavailable (%s): file I/O "
				  "uses plain system calls", strerror(-rc));
		pthread_setspecific(key, t);
	}
	return t->ok ? &t->ring : NULL;
}

int tlcm_io_errno(int e)
{
	switch (-e) {
	case ENOENT: return TLCM_ENOENT;
	case ENOSPC: case EDQUOT: return TLCM_ENOSPC;
	case ENOMEM: return TLCM_ENOMEM;
	case EACCES: case EPERM: return TLCM_EPERM;
	case EEXIST: return TLCM_EEXIST;
	case EAGAIN: return TLCM_EAGAIN;
	case EINVAL: case EBADF: return TLCM_EINVAL;
	case EFBIG: return TLCM_ETOOBIG;
	default: return TLCM_EIO;
	}
}

/* Submit what is queued and collect n completions in order of user_data
 * (0..n-1) into res. */
static int run(struct io_uring *r, unsigned n, int *res)
{
	int rc = io_uring_submit(r);
	if (rc < 0)
		return rc;
	atomic_fetch_add_explicit(&submissions, 1, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;
		do
			rc = io_uring_wait_cqe(r, &cqe);
		while (rc == -EINTR);
		if (rc < 0)
			return rc;
		uint64_t id = io_uring_cqe_get_data64(cqe);
		if (id < n)
			res[id] = cqe->res;
		io_uring_cqe_seen(r, cqe);
	}
	return 0;
}

static struct io_uring_sqe *sqe(struct io_uring *r, uint64_t id)
{
	struct io_uring_sqe *s = io_uring_get_sqe(r);
	if (s)
		io_uring_sqe_set_data64(s, id);
	return s;
}

ssize_t tlcm_io_pread(int fd, void *buf, size_t n, uint64_t off)
{
	struct io_uring *r = ring();
	if (!r) {
		atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
		ssize_t k;
		do
			k = pread(fd, buf, n, (off_t)off);
		while (k < 0 && errno == EINTR);
		return k < 0 ? tlcm_io_errno(-errno) : k;
	}
	int res = 0;
	io_uring_prep_read(sqe(r, 0), fd, buf, (unsigned)(n > 1u << 30 ? 1u << 30 : n),
			   off);
	int rc = run(r, 1, &res);
	if (rc < 0)
		return tlcm_io_errno(rc);
	return res < 0 ? tlcm_io_errno(res) : res;
}

ssize_t tlcm_io_pwrite(int fd, const void *buf, size_t n, uint64_t off)
{
	struct io_uring *r = ring();
	size_t done = 0;
	while (done < n) {
		ssize_t k;
		size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
		if (!r) {
			atomic_fetch_add_explicit(&fallbacks, 1,
						  memory_order_relaxed);
			k = pwrite(fd, (const char *)buf + done, chunk,
				   (off_t)(off + done));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return tlcm_io_errno(-errno);
		} else {
			int res = 0;
			io_uring_prep_write(sqe(r, 0), fd,
					    (const char *)buf + done,
					    (unsigned)chunk, off + done);
			int rc = run(r, 1, &res);
			if (rc < 0)
				return tlcm_io_errno(rc);
			if (res < 0)
				return tlcm_io_errno(res);
			k = res;
		}
		if (k == 0)
			return TLCM_EIO; /* no progress */
		done += (size_t)k;
	}
	return (ssize_t)n;
}

int tlcm_io_fsync(int fd)
{
	struct io_uring *r = ring();
	if (!r) {
		atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
		return fsync(fd) ? tlcm_io_errno(-errno) : 0;
	}
	int res = 0;
	io_uring_prep_fsync(sqe(r, 0), fd, 0);
	int rc = run(r, 1, &res);
	return rc < 0 ? tlcm_io_errno(rc) : res < 0 ? tlcm_io_errno(res) : 0;
}

int tlcm_io_read_file(const char *path, size_t max, void **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tlcm_io_errno(-errno);
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return TLCM_EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return TLCM_ETOOBIG;
	}
	size_t cap = (size_t)st.st_size + 1;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return TLCM_ENOMEM;
	}
	size_t got = 0;
	int rc = 0;
	/* the size may change under us: read until EOF, within max */
	for (;;) {
		if (got + 1 >= cap) {
			if (cap > max) {
				rc = TLCM_ETOOBIG;
				break;
			}
			size_t nc = cap * 2 > max + 1 ? max + 1 : cap * 2;
			char *nb = realloc(buf, nc);
			if (!nb) {
				rc = TLCM_ENOMEM;
				break;
			}
			buf = nb;
			cap = nc;
		}
		ssize_t k = tlcm_io_pread(fd, buf + got, cap - 1 - got, got);
		if (k < 0) {
			rc = (int)k;
			break;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[got] = 0;
	*data = buf;
	*len = got;
	return 0;
}

int tlcm_io_sleep(uint64_t ns)
{
	struct io_uring *r = ring();
	struct __kernel_timespec ts = {.tv_sec = (long long)(ns / 1000000000u),
				       .tv_nsec = (long long)(ns % 1000000000u)};
	if (!r) {
		atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
		struct timespec t = {(time_t)ts.tv_sec, (long)ts.tv_nsec};
		while (nanosleep(&t, &t) != 0 && errno == EINTR)
			;
		return 0;
	}
	int res = 0;
	io_uring_prep_timeout(sqe(r, 0), &ts, 0, 0);
	int rc = run(r, 1, &res);
	if (rc < 0)
		return tlcm_io_errno(rc);
	return res == -ETIME || res == 0 ? 0 : tlcm_io_errno(res);
}

void tlcm_io_stats(tlcm_io_stats_t *st)
{
	st->submissions = atomic_load(&submissions);
	st->fallbacks = atomic_load(&fallbacks);
	st->uring = atomic_load(&uring_ok);
}

void tlcm_io_force_fallback(bool on)
{
	atomic_store(&force_fallback, on);
}
