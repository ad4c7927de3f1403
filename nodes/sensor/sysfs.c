/* sysfs.c — node `sensor.sysfs`: the machine's own readings as Metrics
 * every `interval`: hwmon temperatures (ROOT/sys/class/hwmon/hwmonN/tempM_input
 * with their labels), batteries and chargers (ROOT/sys/class/power_supply:
 * capacity, status, voltage, online), ROOT/proc/loadavg and
 * ROOT/proc/meminfo. Each reading's key is its tag ("hwmon.coretemp.
 * Core_0.celsius", "power.BAT0.capacity_percent", "load.1m",
 * "memory.available_bytes"). ROOT (param `root`, default "/") lets tests
 * point the node at a fake tree. A missing source is skipped with one log
 * line; a malformed value is left out, counted (sensor.malformed in
 * every report) and logged with its file.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/log.h"
#include "fb/metrics_fb.h"
#include "nodes/sensor/sensor.h"

/* ---- Metrics building (shared with modbus.c) --------------------------- */

struct tlcm_sensor_msg {
	tlcm_fbb_t b;
	tlcm_fbb_ref_t *refs;
	size_t n, cap;
	bool oom;
};

tlcm_sensor_msg_t *tlcm_sensor_msg_new(void)
{
	tlcm_sensor_msg_t *m = calloc(1, sizeof *m);
	if (m && tlcm_fbb_init(&m->b, 4096)) {
		free(m);
		return NULL;
	}
	return m;
}

static void put_entry(tlcm_sensor_msg_t *m, const char *key,
		      const char *str, double num)
{
	if (m->oom)
		return;
	if (m->n == m->cap) {
		size_t nc = m->cap ? 2 * m->cap : 32;
		tlcm_fbb_ref_t *r = realloc(m->refs, nc * sizeof *r);
		if (!r) {
			m->oom = true;
			return;
		}
		m->refs = r;
		m->cap = nc;
	}
	tlcm_fbb_ref_t k = tlcm_fbb_cstring(&m->b, key);
	tlcm_fbb_ref_t s = str ? tlcm_fbb_cstring(&m->b, str) : 0;
	tlcm_MetricEntry_start(&m->b);
	tlcm_MetricEntry_add_key(&m->b, k);
	if (s)
		tlcm_MetricEntry_add_str(&m->b, s);
	else
		tlcm_MetricEntry_add_num(&m->b, num);
	m->refs[m->n++] = tlcm_MetricEntry_end(&m->b);
}

void tlcm_sensor_put(tlcm_sensor_msg_t *m, const char *key, double num)
{
	put_entry(m, key, NULL, num);
}

void tlcm_sensor_put_str(tlcm_sensor_msg_t *m, const char *key,
			 const char *str)
{
	put_entry(m, key, str, 0);
}

void tlcm_sensor_msg_free(tlcm_sensor_msg_t *m)
{
	if (!m)
		return;
	free(m->refs);
	tlcm_fbb_fini(&m->b);
	free(m);
}

int tlcm_sensor_emit(tlcm_ctx_t *ctx, tlcm_sensor_msg_t *m, uint64_t seq)
{
	int rc = m->oom ? TLCM_ENOMEM : 0;
	if (!rc) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		tlcm_fbb_ref_t v = tlcm_Metrics_entries_create(&m->b, m->refs,
								m->n);
		tlcm_fbb_ref_t src = tlcm_fbb_cstring(&m->b, tlcm_node_id(ctx));
		tlcm_Metrics_start(&m->b);
		tlcm_Metrics_add_time_ns(&m->b, (uint64_t)ts.tv_sec *
						       1000000000u +
						       (uint64_t)ts.tv_nsec);
		tlcm_Metrics_add_source(&m->b, src);
		tlcm_Metrics_add_seq(&m->b, seq);
		tlcm_Metrics_add_entries(&m->b, v);
		size_t len;
		const void *d = tlcm_Metrics_finish(&m->b, tlcm_Metrics_end(&m->b),
						    &len);
		rc = d ? tlcm_emit(ctx, 0, tlcm_Metrics_IDENTIFIER, d, len)
		       : tlcm_fbb_error(&m->b);
	}
	tlcm_sensor_msg_free(m);
	return rc == TLCM_EAGAIN ? 0 : rc; /* a drop is counted by the edge */
}

void tlcm_sensor_key(char *out, size_t len, const char *in)
{
	size_t i = 0;
	for (; in[i] && i + 1 < len; i++) {
		unsigned char c = (unsigned char)in[i];
		out[i] = isalnum(c) || c == '_' || c == '.' || c == '-'
				 ? (char)c : '_';
	}
	if (len)
		out[i] = 0;
}

/* ---- the node ------------------------------------------------------------ */

enum { S_HWMON = 1, S_POWER = 2, S_LOAD = 4, S_MEMORY = 8 };
static const char *const source_names[] = {"hwmon", "power", "load",
					   "memory"};

typedef struct {
	char root[512];
	uint64_t interval_ns, next_ns, count, sent;
	unsigned include;      /* S_* */
	unsigned missing_told; /* S_* whose absence was logged */
	uint64_t malformed;
	char last_malformed[600];
	tlcm_ctx_t *ctx;       /* during a report */
} sysfs_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "TMET", "the readings as one Metrics every interval", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"root", TLCM_P_PATH, "/", "where sys/ and proc/ are (a fake tree in "
	 "tests)", 0, 0, NULL, 0},
	{"interval", TLCM_P_DURATION, "10s", "time between reports (scaled "
	 "by the hardware profile)", 1000000, 86400e9, NULL,
	 TLCM_PARAM_PERIOD},
	{"include", TLCM_P_LIST, "hwmon,power,load,memory", "what to read: "
	 "hwmon, power, load, memory", 0, 0, NULL, 0},
	{"count", TLCM_P_INT, "0", "end after this many reports (0: until "
	 "the graph stops)", 0, 0, NULL, 0},
	{0},
};

/* ROOT/rel into out */
static void path_of(const sysfs_t *s, char *out, size_t len, const char *rel)
{
	size_t r = strlen(s->root);
	bool slash = r && s->root[r - 1] == '/';
	snprintf(out, len, "%s%s%s", s->root, slash ? "" : "/", rel);
}

/* Read a small text file without its trailing whitespace: 0, or -1 when
 * it does not exist or cannot be read. */
static int read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, len - 1, f);
	int err = ferror(f);
	fclose(f);
	if (err)
		return -1;
	buf[n] = 0;
	while (n && isspace((unsigned char)buf[n - 1]))
		buf[--n] = 0;
	return 0;
}

static void malformed(sysfs_t *s, const char *path, const char *val,
		      const char *expected)
{
	s->malformed++;
	snprintf(s->last_malformed, sizeof s->last_malformed, "%.599s", path);
	if (s->malformed <= 5 || s->malformed % 1000 == 0)
		tlcm_node_log(s->ctx, TLCM_LOG_WARN, "%s: malformed value "
			      "'%.40s' (expected %s; %llu malformed so far)",
			      path, val, expected,
			      (unsigned long long)s->malformed);
}

static void missing(sysfs_t *s, unsigned what, const char *path)
{
	if (s->missing_told & what)
		return;
	s->missing_told |= what;
	int i = 0;
	while ((1u << i) != what)
		i++;
	tlcm_node_log(s->ctx, TLCM_LOG_INFO, "no %s readings: %s is missing "
		      "(skipped)", source_names[i], path);
}

/* An integer file (value / div under key); missing files are silent
 * (optional attributes), malformed ones counted. */
static void put_int_file(sysfs_t *s, tlcm_sensor_msg_t *m, const char *path,
			 const char *key, double div, const char *expected)
{
	char buf[128], *end;
	if (read_text(path, buf, sizeof buf))
		return;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (end == buf || *end || errno) {
		malformed(s, path, buf, expected);
		return;
	}
	tlcm_sensor_put(m, key, (double)v / div);
}

static int only_dirs(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

static void read_hwmon(sysfs_t *s, tlcm_sensor_msg_t *m)
{
	char dir[700];
	path_of(s, dir, sizeof dir, "sys/class/hwmon");
	struct dirent **chips;
	int nchips = scandir(dir, &chips, only_dirs, alphasort);
	if (nchips < 0) {
		missing(s, S_HWMON, dir);
		return;
	}
	char seen[16][64];
	int nseen = 0;
	for (int c = 0; c < nchips; c++) {
		char chip[1000], buf[1100], name[64];
		snprintf(chip, sizeof chip, "%s/%.255s", dir, chips[c]->d_name);
		snprintf(buf, sizeof buf, "%s/name", chip);
		char raw[64];
		if (read_text(buf, raw, sizeof raw) || !raw[0])
			snprintf(raw, sizeof raw, "%.63s", chips[c]->d_name);
		tlcm_sensor_key(name, sizeof name, raw);
		/* two chips of one name (two NVMe drives): the second and
		 * later ones carry their hwmon directory */
		bool dup = false;
		for (int i = 0; i < nseen; i++)
			dup |= !strcmp(seen[i], name);
		if (nseen < 16)
			snprintf(seen[nseen++], sizeof seen[0], "%s", name);
		if (dup) {
			char k[64];
			tlcm_sensor_key(k, sizeof k, chips[c]->d_name);
			size_t l = strlen(name);
			snprintf(name + l, sizeof name - l, "_%.*s",
				 (int)(sizeof name - l - 2), k);
		}
		struct dirent **fs;
		int nf = scandir(chip, &fs, only_dirs, alphasort);
		for (int f = 0; f < nf; f++) {
			const char *fn = fs[f]->d_name;
			unsigned idx;
			int used = 0;
			if (sscanf(fn, "temp%u_input%n", &idx, &used) == 1 &&
			    fn[used] == 0) {
				char lp[1300], fp[1300], lab[64], key[200];
				snprintf(lp, sizeof lp, "%s/temp%u_label", chip,
					 idx);
				if (read_text(lp, raw, sizeof raw) || !raw[0])
					snprintf(raw, sizeof raw, "temp%u", idx);
				tlcm_sensor_key(lab, sizeof lab, raw);
				snprintf(key, sizeof key, "hwmon.%s.%s.celsius",
					 name, lab);
				snprintf(fp, sizeof fp, "%s/%s", chip, fn);
				put_int_file(s, m, fp, key, 1e3, "an integer, "
					     "millidegrees Celsius");
			}
			free(fs[f]);
		}
		if (nf >= 0)
			free(fs);
		free(chips[c]);
	}
	free(chips);
}

static void read_power(sysfs_t *s, tlcm_sensor_msg_t *m)
{
	char dir[700];
	path_of(s, dir, sizeof dir, "sys/class/power_supply");
	struct dirent **sup;
	int n = scandir(dir, &sup, only_dirs, alphasort);
	if (n < 0) {
		missing(s, S_POWER, dir);
		return;
	}
	for (int i = 0; i < n; i++) {
		char name[64], p[1100], key[200], buf[64];
		tlcm_sensor_key(name, sizeof name, sup[i]->d_name);
		snprintf(p, sizeof p, "%s/%s/capacity", dir, sup[i]->d_name);
		snprintf(key, sizeof key, "power.%s.capacity_percent", name);
		put_int_file(s, m, p, key, 1, "an integer, percent");
		snprintf(p, sizeof p, "%s/%s/voltage_now", dir, sup[i]->d_name);
		snprintf(key, sizeof key, "power.%s.voltage_v", name);
		put_int_file(s, m, p, key, 1e6, "an integer, microvolts");
		snprintf(p, sizeof p, "%s/%s/online", dir, sup[i]->d_name);
		snprintf(key, sizeof key, "power.%s.online", name);
		put_int_file(s, m, p, key, 1, "0 or 1");
		snprintf(p, sizeof p, "%s/%s/status", dir, sup[i]->d_name);
		snprintf(key, sizeof key, "power.%s.status", name);
		if (!read_text(p, buf, sizeof buf)) {
			char st[64];
			tlcm_sensor_key(st, sizeof st, buf);
			if (buf[0])
				tlcm_sensor_put_str(m, key, st);
			else
				malformed(s, p, buf, "a status word");
		}
		free(sup[i]);
	}
	free(sup);
}

static void read_load(sysfs_t *s, tlcm_sensor_msg_t *m)
{
	char p[700], buf[256];
	path_of(s, p, sizeof p, "proc/loadavg");
	if (read_text(p, buf, sizeof buf)) {
		missing(s, S_LOAD, p);
		return;
	}
	double l1, l5, l15;
	unsigned long run, tasks;
	int used = 0;
	if (sscanf(buf, "%lf %lf %lf %lu/%lu %*u%n", &l1, &l5, &l15, &run,
		   &tasks, &used) != 5 || used == 0) {
		malformed(s, p, buf, "'L1 L5 L15 RUNNING/TASKS LASTPID'");
		return;
	}
	tlcm_sensor_put(m, "load.1m", l1);
	tlcm_sensor_put(m, "load.5m", l5);
	tlcm_sensor_put(m, "load.15m", l15);
	tlcm_sensor_put(m, "load.running", (double)run);
	tlcm_sensor_put(m, "load.tasks", (double)tasks);
}

static void read_memory(sysfs_t *s, tlcm_sensor_msg_t *m)
{
	static const char *const from[] = {"MemTotal", "MemFree",
		"MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree"};
	static const char *const to[] = {"memory.total_bytes",
		"memory.free_bytes", "memory.available_bytes",
		"memory.buffers_bytes", "memory.cached_bytes",
		"memory.swap_total_bytes", "memory.swap_free_bytes"};
	char p[700], line[256];
	path_of(s, p, sizeof p, "proc/meminfo");
	FILE *f = fopen(p, "r");
	if (!f) {
		missing(s, S_MEMORY, p);
		return;
	}
	while (fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = 0;
		for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
			if (strcmp(line, from[i]))
				continue;
			char *v = colon + 1, *end;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = 0;
			errno = 0;
			unsigned long long kb = strtoull(v, &end, 10);
			if (end == v || errno || (strcmp(end, " kB") && *end)) {
				char where[800];
				snprintf(where, sizeof where, "%s (%s)", p,
					 from[i]);
				malformed(s, where, v, "'N kB'");
				break;
			}
			tlcm_sensor_put(m, to[i], (double)kb *
					(strcmp(end, " kB") ? 1.0 : 1024.0));
		}
	}
	fclose(f);
}

static int report(tlcm_ctx_t *ctx, sysfs_t *s)
{
	tlcm_sensor_msg_t *m = tlcm_sensor_msg_new();
	if (!m)
		return TLCM_ENOMEM;
	s->ctx = ctx;
	if (s->include & S_HWMON)
		read_hwmon(s, m);
	if (s->include & S_POWER)
		read_power(s, m);
	if (s->include & S_LOAD)
		read_load(s, m);
	if (s->include & S_MEMORY)
		read_memory(s, m);
	tlcm_sensor_put(m, "sensor.malformed", (double)s->malformed);
	int rc = tlcm_sensor_emit(ctx, m, ++s->sent);
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot send readings: %s",
			      tlcm_strerror(rc));
	return rc;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	sysfs_t *s = st;
	const char *root = tlcm_param_str(ctx, "root");
	if (strlen(root) >= sizeof s->root || !*root) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "root: '%.40s...' is empty "
			      "or longer than %zu bytes", root,
			      sizeof s->root - 1);
		return TLCM_EINVAL;
	}
	struct stat sb;
	if (stat(root, &sb) || !S_ISDIR(sb.st_mode)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "root: %s is not a "
			      "directory", root);
		return TLCM_ENOENT;
	}
	snprintf(s->root, sizeof s->root, "%s", root);
	s->interval_ns = tlcm_param_duration_ns(ctx, "interval");
	s->count = (uint64_t)tlcm_param_int(ctx, "count");
	const char *const *it;
	size_t n = tlcm_param_list(ctx, "include", &it);
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;
		while (j < 4 && strcmp(it[i], source_names[j]))
			j++;
		if (j == 4) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "include: unknown "
				      "'%s' (expected hwmon, power, load, "
				      "memory)", it[i]);
			return TLCM_EINVAL;
		}
		s->include |= 1u << j;
	}
	s->next_ns = tlcm_now_ns(); /* the first report right away */
	tlcm_set_tick(ctx, s->interval_ns < 200000000u ? s->interval_ns
						       : 200000000u);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	sysfs_t *s = st;
	if (tlcm_stopping(ctx))
		return TLCM_ECLOSED;
	if (now < s->next_ns)
		return 0;
	s->next_ns = now + s->interval_ns;
	int rc = report(ctx, s);
	if (rc && rc != TLCM_ENOMEM)
		return rc;
	return s->count && s->sent >= s->count ? TLCM_ECLOSED : 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	sysfs_t *s = st;
	(void)ctx;
	size_t at = (size_t)snprintf(buf, len, "{\"reports\":%llu,"
				     "\"malformed\":%llu,\"last_malformed\":",
				     (unsigned long long)s->sent,
				     (unsigned long long)s->malformed);
	if (at + 2 >= len || !tlcm_json_str(buf, &at, len - 2, s->last_malformed))
		return TLCM_ENOSPC;
	buf[at++] = '}';
	buf[at] = 0;
	return 0;
}

const tlcm_node_type_t tlcm_node_sensor_sysfs = {
	.name = "sensor.sysfs",
	.doc = "hwmon temperatures, power supplies, load and memory as "
	       "Metrics every interval",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(sysfs_t),
	.init = init,
	.tick = tick,
	.describe = describe,
};
