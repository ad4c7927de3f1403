/* swap.c — atomic replacement of model files: rename + directory fsync,
 * kept copies by hard link or fsync'd copy. See swap.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/error.h"
#include "nodes/updater/swap.h"

int upd_sync_dir_of(const char *path, char *why, size_t cap)
{
	char *d = strdup(path);
	if (!d)
		return TLCM_ENOMEM;
	const char *dir = dirname(d);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0 || fsync(fd))
		rc = tlcm_fail(why, cap, TLCM_EIO, "%s: fsync of the "
			       "directory: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(d);
	return rc;
}

int upd_rename(const char *from, const char *to, char *why, size_t cap)
{
	if (rename(from, to))
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "rename %s -> %s: %s", from, to,
				 strerror(errno));
	return upd_sync_dir_of(to, why, cap);
}

/* A real copy of src at tmp, fsync'd. */
static int copy_file(const char *src, const char *tmp, char *why, size_t cap)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "%s: %s", src, strerror(errno));
	int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return tlcm_fail(why, cap, TLCM_EIO, "%s: %s", tmp,
				 strerror(e));
	}
	static __thread char buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = tlcm_fail(why, cap, TLCM_EIO, "%s: read: %s", src,
				       strerror(errno));
			break;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = tlcm_fail(why, cap, TLCM_EIO, "%s: write: "
					       "%s", tmp, w < 0
					       ? strerror(errno) : "no room");
				break;
			}
			done += w;
		}
		if (rc)
			break;
	}
	if (!rc && fsync(out))
		rc = tlcm_fail(why, cap, TLCM_EIO, "%s: fsync: %s", tmp,
			       strerror(errno));
	close(in);
	if (close(out) && !rc)
		rc = tlcm_fail(why, cap, TLCM_EIO, "%s: close: %s", tmp,
			       strerror(errno));
	if (rc)
		unlink(tmp);
	return rc;
}

int upd_copy_over(const char *src, const char *dst, const char *tmp,
		  char *why, size_t cap)
{
	struct stat st;
	if (stat(src, &st))
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "%s: %s", src, strerror(errno));
	unlink(tmp); /* a leftover of a crash */
	if (link(src, tmp)) {
		int rc = copy_file(src, tmp, why, cap);
		if (rc)
			return rc;
	}
	int rc = upd_rename(tmp, dst, why, cap);
	/* also after success: when tmp and dst were already links to one
	 * file (dst restored from src before), rename() leaves both */
	unlink(tmp);
	return rc;
}
