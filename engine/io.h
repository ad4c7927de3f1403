/* io.h — file I/O and timers on io_uring, for nodes that touch files.
 *
 * Each thread that calls these gets its own small io_uring (created on
 * first use, no locks), so the calls are simple: they submit, wait for the
 * completion and return like pread/pwrite, but the kernel does the work
 * asynchronously and several requests (open + read + close of a whole
 * file) go in one submission. Where io_uring is unavailable (an old kernel,
 * a seccomp filter in a container) the same calls fall back to plain
 * syscalls, and one log line says so. Errors: a negative TLCM_E* code; the
 * errno detail is logged by callers that name the file.
 */
#ifndef TLCM_IO_H
#define TLCM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/error.h"

/* Bytes read (0 at end of file, may be short), or < 0. */
ssize_t tlcm_io_pread(int fd, void *buf, size_t n, uint64_t off);
/* Writes all n bytes (retrying short writes), returns n or < 0. */
ssize_t tlcm_io_pwrite(int fd, const void *buf, size_t n, uint64_t off);
int tlcm_io_fsync(int fd);
/* Open + read up to max bytes + close, as one submission. *data is
 * malloc'd and NUL-terminated (not counted in *len). TLCM_ETOOBIG when the
 * file is larger than max, TLCM_ENOENT when it does not exist. */
int tlcm_io_read_file(const char *path, size_t max, void **data, size_t *len);
/* Sleep on an io_uring timeout (or nanosleep). */
int tlcm_io_sleep(uint64_t ns);

/* Convert a negative errno (as io_uring returns) to TLCM_E*. */
int tlcm_io_errno(int neg_errno);

typedef struct tlcm_io_stats {
	uint64_t submissions; /* io_uring submissions, all threads */
	uint64_t fallbacks;   /* calls served by plain syscalls */
	bool uring;           /* io_uring worked on the last thread that tried */
} tlcm_io_stats_t;

void tlcm_io_stats(tlcm_io_stats_t *st);
/* For tests: pretend io_uring is unavailable (new threads only). */
void tlcm_io_force_fallback(bool on);

#endif
