/* log.h — the engine's log: one line per event on stderr.
 *
 * Format: `2026-11-27T07:22:01.123Z LEVEL [who] message`. The level is a
 * process-wide setting (an engine singleton, set once at start-up from the
 * CLI); lines below it cost one comparison. Thread-safe: each line is
 * written with a single write(2); subscribers (below) get a copy. Secrets
 * must never reach the log: callers print parameter values through
 * tlcm_param_display().
 */
#ifndef TLCM_LOG_H
#define TLCM_LOG_H

enum { TLCM_LOG_ERROR, TLCM_LOG_WARN, TLCM_LOG_INFO, TLCM_LOG_DEBUG };

extern int tlcm_log_level; /* default TLCM_LOG_INFO */

void tlcm_log(int level, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int tlcm_log_parse_level(const char *s);

/* Subscribers: functions that also get every line written (the `logs`
 * node turns them into messages). fn runs on the logging thread, inside
 * tlcm_log, with a read lock held: it must be quick (copy the line into
 * a queue), must not block on anything a logging thread may hold, and
 * must not log. time_ns is CLOCK_REALTIME, who never NULL, msg without
 * time, level and who. Unsubscribing waits until no call into fn runs,
 * so afterwards arg may be freed. At most TLCM_LOG_MAX_SUBSCRIBERS at a
 * time (TLCM_ENOSPC beyond). */
#define TLCM_LOG_MAX_SUBSCRIBERS 8
typedef void (*tlcm_log_fn)(void *arg, int level, const char *who,
			    const char *msg, unsigned long long time_ns);
int tlcm_log_subscribe(tlcm_log_fn fn, void *arg);
void tlcm_log_unsubscribe(tlcm_log_fn fn, void *arg);

#define tlcm_error(who, ...) tlcm_log(TLCM_LOG_ERROR, who, __VA_ARGS__)
#define tlcm_warn(who, ...) tlcm_log(TLCM_LOG_WARN, who, __VA_ARGS__)
#define tlcm_info(who, ...) tlcm_log(TLCM_LOG_INFO, who, __VA_ARGS__)
#define tlcm_debug(who, ...) \
	do { if (tlcm_log_level >= TLCM_LOG_DEBUG) \
		tlcm_log(TLCM_LOG_DEBUG, who, __VA_ARGS__); } while (0)

#endif
