/* logs.c — node `logs`: the engine's log lines as LogLine messages
 * (schemas/log.fbs) for the packager, and optionally a local log file
 * rotated by size.
 *
 * The node subscribes to the engine's log (tlcm_log_subscribe): the
 * subscriber, which runs on whatever thread logs, only copies the line
 * into a bounded queue under a mutex (full: the line is dropped and
 * counted — logging never waits for the graph). Every tick the node takes
 * the queue, appends the lines to `file` (rotating at max_file_size:
 * FILE → FILE.1 → … → FILE.<keep_files>, the oldest deleted) and emits
 * one LogLine per line with its level, source and a sequence number, so
 * the receiver sees gaps. Lines a node logs while the graph's log level
 * filters them never reach the subscriber.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "fb/log_fb.h"
#include "nodes/telemetry/telemetry.h"

typedef struct {
	uint64_t time_ns;
	int level;
	char *who, *text;
} line_t;

/* Shared with the subscriber (other threads): everything under mu. */
typedef struct {
	pthread_mutex_t mu;
	line_t *q;
	size_t head, n, cap;
	int min_level;
	uint64_t dropped; /* queue full or out of memory */
} queue_t;

typedef struct {
	queue_t *q;
	bool subscribed, with_graph;
	uint64_t seq, sent, emit_dropped;
	/* the file */
	char *path;
	int fd;
	uint64_t size, max_size;
	unsigned keep;
	uint64_t file_errors;
} logs_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "TLOG", "one LogLine per line of the engine's log", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"level", TLCM_P_ENUM, "info", "lines at this level or more "
	 "important (the engine's --log-level filters first)", 0, 0,
	 "error|warn|info|debug", 0},
	{"queue", TLCM_P_INT, "1024", "lines held between ticks; more are "
	 "dropped (counted)", 1, 1000000, NULL, 0},
	{"interval", TLCM_P_DURATION, "200ms", "how often the queue is "
	 "emptied", 1000000, 3600e9, NULL, 0},
	{"file", TLCM_P_PATH, "", "also append the lines to this file "
	 "(empty: no file)", 0, 0, NULL, 0},
	{"max_file_size", TLCM_P_SIZE, "1MiB", "rotate the file at this "
	 "size", 1024, 1 << 30, NULL, 0},
	{"keep_files", TLCM_P_INT, "3", "rotated files kept (FILE.1 newest)",
	 0, 100, NULL, 0},
	{"finish", TLCM_P_ENUM, "with_graph", "with_graph: end when every "
	 "node that is not downstream (nor telemetry) has finished; never: "
	 "until the graph stops", 0, 0, "with_graph|never", 0},
	{0},
};

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* The subscriber: copy and go (never logs, never blocks on the graph). */
static void on_line(void *arg, int level, const char *who, const char *msg,
		    unsigned long long time_ns)
{
	queue_t *q = arg;
	pthread_mutex_lock(&q->mu);
	if (level > q->min_level) {
		pthread_mutex_unlock(&q->mu);
		return;
	}
	if (q->n == q->cap) {
		q->dropped++;
		pthread_mutex_unlock(&q->mu);
		return;
	}
	line_t *l = &q->q[(q->head + q->n) % q->cap];
	l->who = strdup(who);
	l->text = strdup(msg);
	if (!l->who || !l->text) {
		free(l->who);
		free(l->text);
		q->dropped++;
	} else {
		l->time_ns = time_ns;
		l->level = level;
		q->n++;
	}
	pthread_mutex_unlock(&q->mu);
}

/* ---- the file ------------------------------------------------------------ */

static void file_close(logs_t *g)
{
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
}

static int file_open(tlcm_ctx_t *ctx, logs_t *g)
{
	g->fd = open(g->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (g->fd < 0) {
		if (g->file_errors++ % 100 == 0)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "file %s: %s (%"
				      PRIu64 " failures so far; retrying)",
				      g->path, strerror(errno),
				      g->file_errors);
		return TLCM_EIO;
	}
	struct stat st;
	g->size = fstat(g->fd, &st) ? 0 : (uint64_t)st.st_size;
	return 0;
}

/* FILE.k → FILE.k+1 for k = keep-1 … 1, FILE → FILE.1 (or, keeping
 * none, FILE is emptied), then a new FILE. */
static void rotate(tlcm_ctx_t *ctx, logs_t *g)
{
	file_close(g);
	size_t n = strlen(g->path) + 16;
	char *a = malloc(n), *b = malloc(n);
	if (a && b) {
		if (!g->keep) {
			unlink(g->path);
		} else {
			snprintf(a, n, "%s.%u", g->path, g->keep);
			unlink(a);
			for (unsigned k = g->keep; k > 1; k--) {
				snprintf(a, n, "%s.%u", g->path, k - 1);
				snprintf(b, n, "%s.%u", g->path, k);
				rename(a, b); /* missing ones: ENOENT, fine */
			}
			snprintf(b, n, "%s.1", g->path);
			rename(g->path, b);
		}
	}
	free(a);
	free(b);
	file_open(ctx, g);
}

static void file_write(tlcm_ctx_t *ctx, logs_t *g, const line_t *l)
{
	if (g->fd < 0 && file_open(ctx, g))
		return;
	char buf[1400];
	time_t s = (time_t)(l->time_ns / 1000000000u);
	struct tm tm;
	gmtime_r(&s, &tm);
	int lv = l->level < 0 ? 0 : l->level > 3 ? 3 : l->level;
	int n = snprintf(buf, sizeof buf,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s [%s] %s\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(l->time_ns / 1000000u % 1000u),
			 level_names[lv], l->who, l->text);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
	if (len >= sizeof buf - 1)
		buf[len - 1] = '\n';
	if (g->size && g->size + len > g->max_size)
		rotate(ctx, g);
	if (g->fd < 0)
		return;
	ssize_t w = write(g->fd, buf, len);
	if (w < 0) {
		if (g->file_errors++ % 100 == 0)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "file %s: %s",
				      g->path, strerror(errno));
		file_close(g);
		return;
	}
	g->size += (uint64_t)w;
}

/* ---- node ---------------------------------------------------------------- */

static void queue_free(queue_t *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++) {
		line_t *l = &q->q[(q->head + i) % q->cap];
		free(l->who);
		free(l->text);
	}
	free(q->q);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

static void release(logs_t *g)
{
	if (g->subscribed)
		tlcm_log_unsubscribe(on_line, g->q); /* waits out callers */
	g->subscribed = false;
	queue_free(g->q);
	g->q = NULL;
	file_close(g);
	free(g->path);
	g->path = NULL;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	logs_t *g = st;
	g->fd = -1;
	g->with_graph = !strcmp(tlcm_param_str(ctx, "finish"), "with_graph");
	const char *path = tlcm_param_str(ctx, "file");
	g->max_size = tlcm_param_size(ctx, "max_file_size");
	g->keep = (unsigned)tlcm_param_int(ctx, "keep_files");
	g->q = calloc(1, sizeof *g->q);
	if (!g->q)
		return TLCM_ENOMEM;
	pthread_mutex_init(&g->q->mu, NULL);
	g->q->cap = (size_t)tlcm_param_int(ctx, "queue");
	g->q->q = calloc(g->q->cap, sizeof *g->q->q);
	const char *lv = tlcm_param_str(ctx, "level");
	g->q->min_level = tlcm_log_parse_level(lv);
	if (path && path[0] && !(g->path = strdup(path))) {
		release(g);
		return TLCM_ENOMEM;
	}
	if (!g->q->q) {
		release(g);
		return TLCM_ENOMEM;
	}
	if (g->path && file_open(ctx, g)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "file: cannot open %s",
			      g->path);
		release(g);
		return TLCM_EIO;
	}
	int rc = tlcm_log_subscribe(on_line, g->q);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot subscribe to the "
			      "log: %d subscribers already",
			      TLCM_LOG_MAX_SUBSCRIBERS);
		release(g);
		return rc;
	}
	g->subscribed = true;
	tlcm_set_tick(ctx, tlcm_param_duration_ns(ctx, "interval"));
	return 0;
}

static int emit_line(tlcm_ctx_t *ctx, logs_t *g, const line_t *l,
		     uint64_t dropped)
{
	tlcm_fbb_t b;
	int rc = tlcm_fbb_init(&b, 256 + strlen(l->text) + strlen(l->who));
	if (rc)
		return rc;
	tlcm_fbb_ref_t who = tlcm_fbb_cstring(&b, l->who);
	tlcm_fbb_ref_t text = tlcm_fbb_cstring(&b, l->text);
	tlcm_LogLine_start(&b);
	tlcm_LogLine_add_time_ns(&b, l->time_ns);
	tlcm_LogLine_add_level(&b, (int8_t)(l->level < 0 ? 0
					    : l->level > 3 ? 3 : l->level));
	tlcm_LogLine_add_source(&b, who);
	tlcm_LogLine_add_text(&b, text);
	tlcm_LogLine_add_seq(&b, ++g->seq);
	tlcm_LogLine_add_dropped(&b, dropped);
	size_t len;
	const void *d = tlcm_LogLine_finish(&b, tlcm_LogLine_end(&b), &len);
	rc = d ? tlcm_emit(ctx, 0, tlcm_LogLine_IDENTIFIER, d, len)
	       : tlcm_fbb_error(&b);
	tlcm_fbb_fini(&b);
	if (rc == TLCM_EAGAIN) {
		g->emit_dropped++; /* the edge dropped it (counted there) */
		rc = 0;
	}
	if (!rc)
		g->sent++;
	return rc;
}

/* Take the queued lines out (short critical section), then write and
 * emit them. */
static int drain(tlcm_ctx_t *ctx, logs_t *g)
{
	queue_t *q = g->q;
	pthread_mutex_lock(&q->mu);
	size_t n = q->n, head = q->head, cap = q->cap;
	line_t *taken = n ? malloc(n * sizeof *taken) : NULL;
	if (taken) {
		for (size_t i = 0; i < n; i++)
			taken[i] = q->q[(head + i) % cap];
		q->head = (head + n) % cap;
		q->n = 0;
	} else {
		n = 0;
	}
	uint64_t dropped = q->dropped;
	pthread_mutex_unlock(&q->mu);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		/* each LogLine carries the count of lines lost so far */
		if (g->path)
			file_write(ctx, g, &taken[i]);
		if (!rc)
			rc = emit_line(ctx, g, &taken[i], dropped);
		free(taken[i].who);
		free(taken[i].text);
	}
	free(taken);
	return rc;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	logs_t *g = st;
	(void)now;
	bool last = tlcm_stopping(ctx) ||
		    (g->with_graph && tlcm_telemetry_graph_done(ctx));
	int rc = drain(ctx, g);
	if (rc && rc != TLCM_ECLOSED)
		return rc;
	return last || rc == TLCM_ECLOSED ? TLCM_ECLOSED : 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	logs_t *g = st;
	(void)ctx;
	pthread_mutex_lock(&g->q->mu);
	uint64_t dropped = g->q->dropped;
	size_t queued = g->q->n;
	pthread_mutex_unlock(&g->q->mu);
	int n = snprintf(buf, len, "{\"sent\":%" PRIu64 ",\"queued\":%zu,"
			 "\"dropped\":%" PRIu64 ",\"edge_dropped\":%" PRIu64
			 ",\"file_bytes\":%" PRIu64 ",\"file_errors\":%"
			 PRIu64 "}", g->sent, queued, dropped,
			 g->emit_dropped, g->size, g->file_errors);
	return n < 0 || (size_t)n >= len ? TLCM_ENOSPC : 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	logs_t *g = st;
	if (g->path && g->q) {
		/* the last lines reach the file at least */
		tlcm_log_unsubscribe(on_line, g->q);
		g->subscribed = false;
		pthread_mutex_lock(&g->q->mu);
		for (size_t i = 0; i < g->q->n; i++)
			file_write(ctx, g, &g->q->q[(g->q->head + i) %
						    g->q->cap]);
		pthread_mutex_unlock(&g->q->mu);
	}
	release(g);
}

const tlcm_node_type_t tlcm_node_logs = {
	.name = "logs",
	.doc = "the engine's log lines as LogLine messages, and a rotated "
	       "local log file",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(logs_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
