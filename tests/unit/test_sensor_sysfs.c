/* test_sensor_sysfs.c — node sensor.sysfs against fake sysfs/proc trees
 * (exact values, labels, duplicate chip names, malformed and missing
 * files) and once against this machine's real /proc; plus hardware
 * profile detection from a fake tree (engine/profile.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/profile.h"
#include "engine/sched.h"
#include "fb/metrics_fb.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

/* ---- a node that keeps the last Metrics -------------------------------- */

#define MAXE 128
static struct {
	char key[MAXE][200];
	char str[MAXE][64];
	double num[MAXE];
	bool is_str[MAXE];
	size_t n;
	unsigned msgs;
	uint64_t seq;
	char source[64];
	char profile[32]; /* tlcm_profile() as the node saw it */
} got;

static const tlcm_port_desc_t met_in[] = {{"in", "TMET", "", 0}, {0}};

static int catch_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	const char *why;
	(void)st;
	(void)port;
	const void *buf = tlcm_msg_data(m);
	CHECK_INT(tlcm_Metrics_verify_as_root(buf, m->size, &why), 0);
	tlcm_Metrics_table_t t = tlcm_Metrics_as_root(buf);
	got.msgs++;
	snprintf(got.profile, sizeof got.profile, "%s", tlcm_profile(ctx));
	got.seq = tlcm_Metrics_seq(t);
	const char *src = tlcm_Metrics_source(t);
	snprintf(got.source, sizeof got.source, "%s", src ? src : "");
	got.n = 0;
	for (size_t i = 0; i < tlcm_Metrics_entries_len(t) && i < MAXE; i++) {
		tlcm_MetricEntry_table_t e = tlcm_Metrics_entries_at(t, i);
		const char *k = tlcm_MetricEntry_key(e);
		snprintf(got.key[i], 200, "%s", k ? k : "");
		const char *s = tlcm_MetricEntry_str(e);
		got.is_str[i] = s != NULL;
		snprintf(got.str[i], 64, "%s", s ? s : "");
		got.num[i] = tlcm_MetricEntry_num(e);
		got.n++;
	}
	return 0;
}

static const tlcm_node_type_t catch_type = {
	.name = "catch", .doc = "keep the last Metrics", .inputs = met_in,
	.process = catch_process};

static tlcm_registry_t reg;

static int find(const char *key)
{
	for (size_t i = 0; i < got.n; i++)
		if (!strcmp(got.key[i], key))
			return (int)i;
	return -1;
}

#define CHECK_NUM(key, v)                                                   \
	do {                                                                \
		int i_ = find(key);                                         \
		CHECK(i_ >= 0);                                             \
		if (i_ >= 0)                                                \
			CHECK_DBL(got.num[i_], v);                          \
	} while (0)

static int run(const char *root, const char *extra, unsigned count)
{
	char yaml[2048], path[] = "/tmp/tlcm-test-sysfs-XXXXXX.yaml";
	snprintf(yaml, sizeof yaml,
		 "graph: sysfs\n"
		 "settings: { introspect: 'off' }\n"
		 "nodes:\n"
		 "  s: { type: sensor.sysfs, params: { root: '%s', count: %u,"
		 " interval: 1ms %s } }\n"
		 "  out: { type: catch }\n"
		 "edges:\n"
		 "  - { from: s.out, to: out.in }\n", root, count, extra);
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	if (rc)
		tlcm_diag_print(&d, stderr);
	tlcm_diag_fini(&d);
	unlink(path);
	if (rc)
		return rc;
	memset(&got, 0, sizeof got);
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	tlcm_run_result_t res;
	rc = tlcm_graph_run(g, &o, &res);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	return rc;
}

static void put(const char *dir, const char *rel, const char *text)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	/* make the parents */
	for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(p, 0755);
		*s = '/';
	}
	FILE *f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static void fake_tree(const char *dir)
{
	put(dir, "sys/class/hwmon/hwmon0/name", "coretemp\n");
	put(dir, "sys/class/hwmon/hwmon0/temp1_input", "45000\n");
	put(dir, "sys/class/hwmon/hwmon0/temp1_label", "Package id 0\n");
	put(dir, "sys/class/hwmon/hwmon0/temp2_input", "-1250\n");
	put(dir, "sys/class/hwmon/hwmon0/temp2_label", "Core 0\n");
	put(dir, "sys/class/hwmon/hwmon0/temp3_input", "38500\n"); /* no label */
	put(dir, "sys/class/hwmon/hwmon0/temp3_max", "100000\n"); /* ignored */
	put(dir, "sys/class/hwmon/hwmon1/name", "nvme\n");
	put(dir, "sys/class/hwmon/hwmon1/temp1_input", "31850\n");
	put(dir, "sys/class/hwmon/hwmon2/name", "nvme\n");
	put(dir, "sys/class/hwmon/hwmon2/temp1_input", "29000\n");
	put(dir, "sys/class/power_supply/BAT0/capacity", "87\n");
	put(dir, "sys/class/power_supply/BAT0/status", "Discharging\n");
	put(dir, "sys/class/power_supply/BAT0/voltage_now", "12250000\n");
	put(dir, "sys/class/power_supply/AC/online", "1\n");
	put(dir, "proc/loadavg", "0.25 0.50 1.75 3/412 9876\n");
	put(dir, "proc/meminfo", "MemTotal:        1024 kB\n"
				 "MemFree:          256 kB\n"
				 "MemAvailable:     512 kB\n"
				 "Buffers:            8 kB\n"
				 "Cached:            64 kB\n"
				 "SwapCached:         0 kB\n"
				 "SwapTotal:          0 kB\n"
				 "SwapFree:           0 kB\n");
}

static void exact_values(const char *dir)
{
	fake_tree(dir);
	CHECK_INT(run(dir, "", 2), 0);
	CHECK_INT(got.msgs, 2);
	CHECK_UINT(got.seq, 2);
	CHECK_STR(got.source, "s");
	CHECK_NUM("hwmon.coretemp.Package_id_0.celsius", 45.0);
	CHECK_NUM("hwmon.coretemp.Core_0.celsius", -1.25);
	CHECK_NUM("hwmon.coretemp.temp3.celsius", 38.5);
	CHECK_NUM("hwmon.nvme.temp1.celsius", 31.85);
	CHECK_NUM("hwmon.nvme_hwmon2.temp1.celsius", 29.0);
	CHECK_NUM("power.BAT0.capacity_percent", 87);
	CHECK_NUM("power.BAT0.voltage_v", 12.25);
	CHECK_NUM("power.AC.online", 1);
	int i = find("power.BAT0.status");
	CHECK(i >= 0 && got.is_str[i]);
	if (i >= 0)
		CHECK_STR(got.str[i], "Discharging");
	CHECK_NUM("load.1m", 0.25);
	CHECK_NUM("load.5m", 0.5);
	CHECK_NUM("load.15m", 1.75);
	CHECK_NUM("load.running", 3);
	CHECK_NUM("load.tasks", 412);
	CHECK_NUM("memory.total_bytes", 1024 * 1024.0);
	CHECK_NUM("memory.free_bytes", 256 * 1024.0);
	CHECK_NUM("memory.available_bytes", 512 * 1024.0);
	CHECK_NUM("memory.buffers_bytes", 8 * 1024.0);
	CHECK_NUM("memory.cached_bytes", 64 * 1024.0);
	CHECK_NUM("memory.swap_total_bytes", 0);
	CHECK_NUM("memory.swap_free_bytes", 0);
	CHECK_NUM("sensor.malformed", 0);
	/* nothing else: 5 hwmon + 4 power + 5 load + 7 memory + 1 */
	CHECK_INT(got.n, 22);
	CHECK(find("hwmon.coretemp.temp3_max.celsius") < 0);

	/* include picks sources */
	CHECK_INT(run(dir, ", include: [load]", 1), 0);
	CHECK_INT(got.n, 6);
	CHECK_NUM("load.tasks", 412);
}

static void malformed_values(const char *dir)
{
	fake_tree(dir);
	put(dir, "sys/class/hwmon/hwmon0/temp2_input", "hot\n");
	put(dir, "sys/class/power_supply/BAT0/capacity", "87%\n");
	put(dir, "proc/loadavg", "garbage\n");
	put(dir, "proc/meminfo", "MemTotal:        1024 kB\n"
				 "MemFree:          lots kB\n");
	CHECK_INT(run(dir, "", 2), 0);
	CHECK_INT(got.msgs, 2);
	/* 4 malformed per report, counted across reports */
	CHECK_NUM("sensor.malformed", 8);
	CHECK(find("hwmon.coretemp.Core_0.celsius") < 0);
	CHECK_NUM("hwmon.coretemp.Package_id_0.celsius", 45.0);
	CHECK(find("power.BAT0.capacity_percent") < 0);
	CHECK_NUM("power.BAT0.voltage_v", 12.25);
	CHECK(find("load.1m") < 0);
	CHECK_NUM("memory.total_bytes", 1024 * 1024.0);
	CHECK(find("memory.free_bytes") < 0);
}

static void missing_sources(const char *dir)
{
	/* an empty root: every source missing, reports still go out */
	CHECK_INT(run(dir, "", 1), 0);
	CHECK_INT(got.msgs, 1);
	CHECK_INT(got.n, 1);
	CHECK_NUM("sensor.malformed", 0);
	/* a root that is not a directory fails the start */
	CHECK(run("/nonexistent-tlcm-root", "", 1) != 0);
	CHECK(run(dir, ", include: [disk]", 1) != 0);
}

static void this_machine(void)
{
	CHECK_INT(run("/", "", 1), 0);
	CHECK_INT(got.msgs, 1);
	CHECK_NUM("sensor.malformed", 0);
	CHECK(find("load.1m") >= 0);
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kb = 0;
	CHECK(f && fscanf(f, "MemTotal: %llu kB", &kb) == 1);
	if (f)
		fclose(f);
	CHECK_NUM("memory.total_bytes", (double)kb * 1024.0);
}

static void profiles(const char *dir)
{
	tlcm_hw_t hw;
	put(dir, "sys/devices/system/cpu/online", "0\n");
	put(dir, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
	    "1000000\n");
	put(dir, "proc/meminfo", "MemTotal:  524288 kB\n");
	tlcm_hw_read(dir, &hw);
	CHECK_INT(hw.cpus, 1);
	CHECK_UINT(hw.max_mhz, 1000);
	CHECK_UINT(hw.ram_mib, 512);
	/* a Pi Zero at 1 GHz is not below 1000 MHz */
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_BALANCED);
	put(dir, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
	    "700000\n");
	tlcm_hw_read(dir, &hw);
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_LOW_POWER);
	/* no cpufreq (a VM): frequency unknown, decided by CPUs and RAM */
	char p[1024];
	snprintf(p, sizeof p,
		 "%s/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", dir);
	unlink(p);
	tlcm_hw_read(dir, &hw);
	CHECK_UINT(hw.max_mhz, 0);
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_LOW_POWER);
	put(dir, "sys/devices/system/cpu/online", "0-3\n");
	put(dir, "sys/devices/system/cpu/cpu3/cpufreq/cpuinfo_max_freq",
	    "1800000\n");
	put(dir, "proc/meminfo", "MemTotal:  3906250 kB\n");
	tlcm_hw_read(dir, &hw);
	CHECK_INT(hw.cpus, 4);
	CHECK_UINT(hw.max_mhz, 1800);
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_BALANCED);
	put(dir, "sys/devices/system/cpu/online", "0-3,6-7\n");
	tlcm_hw_read(dir, &hw);
	CHECK_INT(hw.cpus, 6);
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_HIGH_PERFORMANCE);
	put(dir, "sys/devices/system/cpu/online", "0-1\n");
	put(dir, "proc/meminfo", "MemTotal:  8000000 kB\n");
	tlcm_hw_read(dir, &hw);
	CHECK_INT(tlcm_profile_classify(&hw), TLCM_PROFILE_HIGH_PERFORMANCE);

	tlcm_profile_t pr;
	CHECK_INT(tlcm_profile_parse("low-power", &pr), 0);
	CHECK_INT(pr, TLCM_PROFILE_LOW_POWER);
	CHECK_INT(tlcm_profile_parse("HIGH_PERFORMANCE", &pr), 0);
	CHECK_INT(pr, TLCM_PROFILE_HIGH_PERFORMANCE);
	CHECK_INT(tlcm_profile_parse("HIGH", &pr), TLCM_EINVAL);
	CHECK_INT(tlcm_profile_parse("", &pr), TLCM_EINVAL);
	char why[200];
	CHECK_INT(tlcm_profile_select("turbo", why, sizeof why), TLCM_EINVAL);
	CHECK_CONTAINS(why, "--profile: unknown profile 'turbo'");

	/* nodes see the profile: BALANCED while none is selected (the
	 * runs above), then the selected one */
	CHECK_STR(got.profile, "BALANCED");
	CHECK_INT(tlcm_profile_select("low_power", why, sizeof why), 0);
	CHECK_INT(run(dir, ", include: [load]", 1), 0);
	CHECK_STR(got.profile, "LOW_POWER");
	CHECK_STR(tlcm_profile_origin(), "--profile");
}

int main(void)
{
	char base[] = "/tmp/tlcm-test-sysfs-XXXXXX";
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	char d1[600], d2[600], d3[600], d4[600];
	snprintf(d1, sizeof d1, "%s/exact", base);
	snprintf(d2, sizeof d2, "%s/bad", base);
	snprintf(d3, sizeof d3, "%s/empty", base);
	snprintf(d4, sizeof d4, "%s/hw", base);
	mkdir(d1, 0755);
	mkdir(d2, 0755);
	mkdir(d3, 0755);
	mkdir(d4, 0755);
	CHECK_INT(tlcm_builtin_nodes(&reg), 0);
	CHECK_INT(tlcm_registry_add(&reg, &catch_type), 0);

	exact_values(d1);
	malformed_values(d2);
	missing_sources(d3);
	this_machine();
	profiles(d4);

	tlcm_registry_fini(&reg);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", base);
	return tlcm_test_done();
}
