/* log.c — see log.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/log.h"

int tlcm_log_level = TLCM_LOG_INFO;

static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* Engine singleton: the subscribers. nsubs is read without the lock so a
 * process without subscribers pays one atomic load per line; the list
 * itself is read under the read lock, changed under the write lock. */
static pthread_rwlock_t subs_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct {
	tlcm_log_fn fn;
	void *arg;
} subs[TLCM_LOG_MAX_SUBSCRIBERS];
static atomic_int nsubs;

int tlcm_log_subscribe(tlcm_log_fn fn, void *arg)
{
	int rc = TLCM_ENOSPC;
	pthread_rwlock_wrlock(&subs_lock);
	int n = atomic_load(&nsubs);
	if (n < TLCM_LOG_MAX_SUBSCRIBERS) {
		subs[n].fn = fn;
		subs[n].arg = arg;
		atomic_store(&nsubs, n + 1);
		rc = 0;
	}
	pthread_rwlock_unlock(&subs_lock);
	return rc;
}

void tlcm_log_unsubscribe(tlcm_log_fn fn, void *arg)
{
	pthread_rwlock_wrlock(&subs_lock);
	int n = atomic_load(&nsubs);
	for (int i = 0; i < n; i++)
		if (subs[i].fn == fn && subs[i].arg == arg) {
			subs[i] = subs[n - 1];
			atomic_store(&nsubs, n - 1);
			break;
		}
	pthread_rwlock_unlock(&subs_lock);
}

static void notify(int level, const char *who, const char *msg,
		   const struct timeval *tv)
{
	unsigned long long t = (unsigned long long)tv->tv_sec * 1000000000ull +
			       (unsigned long long)tv->tv_usec * 1000ull;
	pthread_rwlock_rdlock(&subs_lock);
	int n = atomic_load(&nsubs);
	for (int i = 0; i < n; i++)
		subs[i].fn(subs[i].arg, level, who, msg, t);
	pthread_rwlock_unlock(&subs_lock);
}

void tlcm_log(int level, const char *who, const char *fmt, ...)
{
	if (level > tlcm_log_level)
		return;
	char line[1024];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s [%s] ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(tv.tv_usec / 1000),
			 names[level < 0 ? 0 : level > 3 ? 3 : level],
			 who ? who : "tinylcm");
	if (n < 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len] = 0;
	if (atomic_load_explicit(&nsubs, memory_order_relaxed))
		notify(level, who ? who : "tinylcm",
		       (size_t)n <= len ? line + n : "", &tv);
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

int tlcm_log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}
