/* deploy.c — the deployment directory's files (see deploy.h): atomic
 * writes (temporary name, fsync, rename, directory fsync), bounded reads,
 * ETags and the outcome records the runner leaves for the uploader.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/error.h"
#include "nodes/updater/swap.h"
#include "nodes/uploader/deploy.h"

static int make_dir(const char *path, char *why, size_t cap)
{
	if (!mkdir(path, 0755) || errno == EEXIST) {
		struct stat st;
		if (!stat(path, &st) && S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
	}
	return tlcm_fail(why, cap, TLCM_EIO, "deploy directory %s: %s", path,
			 strerror(errno));
}

int up_deploy_dirs(const char *dir, char *why, size_t cap)
{
	char p[4096];
	int rc = make_dir(dir, why, cap);
	if (rc)
		return rc;
	snprintf(p, sizeof p, "%s/%s", dir, UP_DEPLOY_OUTCOMES);
	return make_dir(p, why, cap);
}

int up_deploy_write(const char *dir, const char *name, const void *data,
		    size_t len, char *why, size_t cap)
{
	char tmp[4096], dst[4096];
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	snprintf(dst, sizeof dst, "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return tlcm_fail(why, cap, TLCM_EIO, "%s: %s", tmp,
				 strerror(errno));
	const char *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;
			close(fd);
			unlink(tmp);
			return tlcm_fail(why, cap, TLCM_EIO, "writing %s: %s",
					 tmp, strerror(e));
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return tlcm_fail(why, cap, TLCM_EIO, "fsync %s: %s", tmp,
				 strerror(e));
	}
	close(fd);
	int rc = upd_rename(tmp, dst, why, cap);
	if (rc)
		unlink(tmp);
	return rc;
}

int up_deploy_read(const char *path, size_t max, char **out, size_t *len,
		   char *why, size_t cap)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? TLCM_ENOENT :
		       tlcm_fail(why, cap, TLCM_EIO, "%s: %s", path,
				 strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return tlcm_fail(why, cap, TLCM_EIO, "%s: not a regular file",
				 path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return tlcm_fail(why, cap, TLCM_ENOSPC, "%s: %lld bytes, more "
				 "than %zu", path, (long long)st.st_size, max);
	}
	char *b = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	while (b && n < (size_t)st.st_size) {
		ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* shorter than it was: what is there */
		n += (size_t)r;
	}
	close(fd);
	if (!b)
		return TLCM_ENOMEM;
	b[n] = 0;
	*out = b;
	*len = n;
	return 0;
}

void up_deploy_etag(const void *p, size_t n, char out[65])
{
	static const char d[] = "0123456789abcdef";
	unsigned char h[32];
	crypto_hash_sha256(h, p, n);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = d[h[i] >> 4];
		out[2 * i + 1] = d[h[i] & 15];
	}
	out[64] = 0;
}

int up_deploy_outcome(const char *dir, const char *etag, const char *outcome,
		      const char *detail, char *why, size_t cap)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	char d[UP_DEPLOY_DETAIL + 1];
	snprintf(d, sizeof d, "%s", detail ? detail : "");
	/* a cut in the middle of a UTF-8 sequence: drop its start */
	size_t dl = strlen(d), k = dl;
	while (k && ((unsigned char)d[k - 1] & 0xc0) == 0x80)
		k--;
	if (k && (unsigned char)d[k - 1] >= 0xc0) {
		size_t need = (unsigned char)d[k - 1] >= 0xf0 ? 4 :
			      (unsigned char)d[k - 1] >= 0xe0 ? 3 : 2;
		if (dl - (k - 1) < need)
			d[k - 1] = 0;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "etag", etag);
	cJSON_AddStringToObject(o, "outcome", outcome);
	cJSON_AddStringToObject(o, "detail", d);
	char num[24];
	snprintf(num, sizeof num, "%" PRIu64, t);
	cJSON_AddRawToObject(o, "time_ns", num);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return TLCM_ENOMEM;
	char sub[4096], name[64];
	snprintf(sub, sizeof sub, "%s/%s", dir, UP_DEPLOY_OUTCOMES);
	for (;; t++) { /* never over an earlier one */
		char p[4200];
		snprintf(name, sizeof name, "%020" PRIu64 ".json", t);
		snprintf(p, sizeof p, "%s/%s", sub, name);
		if (access(p, F_OK))
			break;
	}
	int rc = up_deploy_write(sub, name, s, strlen(s), why, cap);
	cJSON_free(s);
	return rc;
}

/* T.json with T 20 digits */
static bool outcome_name(const char *n)
{
	for (int i = 0; i < 20; i++)
		if (n[i] < '0' || n[i] > '9')
			return false;
	return !strcmp(n + 20, ".json");
}

int up_deploy_next_outcome(const char *dir, char *name, size_t cap)
{
	char sub[4096];
	snprintf(sub, sizeof sub, "%s/%s", dir, UP_DEPLOY_OUTCOMES);
	DIR *d = opendir(sub);
	if (!d)
		return TLCM_ENOENT;
	char best[32] = ""; /* names are 25 characters */
	struct dirent *e;
	while ((e = readdir(d)))
		if (outcome_name(e->d_name) &&
		    (!best[0] || strcmp(e->d_name, best) < 0))
			memcpy(best, e->d_name, 26);
	closedir(d);
	if (!best[0])
		return TLCM_ENOENT;
	snprintf(name, cap, "%s", best);
	return 0;
}
