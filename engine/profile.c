/* profile.c — hardware profiles (see profile.h): the multiplier table,
 * detection from sysfs and /proc, and the process's choice (an engine
 * singleton written once by the CLI before any graph loads, read-only
 * afterwards).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/profile.h"

/* After the seed's adaptive sleep (poll_interval_multiplier), cache
 * (cache_size_multiplier) and thread pool sizes. */
static const tlcm_profile_scale_t scales[] = {
	[TLCM_PROFILE_LOW_POWER] = {2, 0.5, 2.0, 0.5},
	[TLCM_PROFILE_BALANCED] = {4, 1.0, 1.0, 1.0},
	[TLCM_PROFILE_HIGH_PERFORMANCE] = {8, 2.0, 0.5, 2.0},
};
static const char *const names[] = {"LOW_POWER", "BALANCED",
				    "HIGH_PERFORMANCE"};

static tlcm_profile_t current = TLCM_PROFILE_BALANCED;
static const char *origin = "default";
static tlcm_hw_t hw_seen;

const char *tlcm_profile_name(tlcm_profile_t p)
{
	return (unsigned)p < 3 ? names[p] : "?";
}

int tlcm_profile_parse(const char *s, tlcm_profile_t *out)
{
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(names[i]), j = 0;
		for (; j < n && s[j]; j++) {
			char c = s[j] == '-' ? '_' : (char)toupper((unsigned char)s[j]);
			if (c != names[i][j])
				break;
		}
		if (j == n && !s[j]) {
			*out = (tlcm_profile_t)i;
			return 0;
		}
	}
	return TLCM_EINVAL;
}

const tlcm_profile_scale_t *tlcm_profile_scale(tlcm_profile_t p)
{
	return &scales[(unsigned)p < 3 ? p : TLCM_PROFILE_BALANCED];
}

/* The first unsigned number in file root/rel, or -1. */
static long long read_num(const char *root, const char *rel)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	FILE *f = fopen(path, "r");
	long long v = -1;
	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* "0-3,5" → 5 */
static int count_cpu_list(const char *s)
{
	int n = 0;
	for (;;) {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (end == s)
			return n;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		if (b >= a)
			n += (int)(b - a + 1);
		if (*end != ',')
			return n;
		s = end + 1;
	}
}

void tlcm_hw_read(const char *root, tlcm_hw_t *hw)
{
	memset(hw, 0, sizeof *hw);
	char path[512], line[256];
	snprintf(path, sizeof path, "%s/sys/devices/system/cpu/online", root);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fgets(line, sizeof line, f))
			hw->cpus = count_cpu_list(line);
		fclose(f);
	}
	if (hw->cpus <= 0 && !strcmp(root, "/")) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		hw->cpus = n > 0 ? (int)n : 1;
	}
	/* the highest cpuinfo_max_freq (kHz) of any CPU */
	snprintf(path, sizeof path, "%s/sys/devices/system/cpu", root);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "cpu", 3) ||
		    !isdigit((unsigned char)e->d_name[3]))
			continue;
		char rel[320];
		snprintf(rel, sizeof rel, "sys/devices/system/cpu/%.256s/"
			 "cpufreq/cpuinfo_max_freq", e->d_name);
		long long khz = read_num(root, rel);
		if (khz > 0 && (unsigned)(khz / 1000) > hw->max_mhz)
			hw->max_mhz = (unsigned)(khz / 1000);
	}
	if (d)
		closedir(d);
	snprintf(path, sizeof path, "%s/proc/meminfo", root);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "MemTotal:", 9)) {
			hw->ram_mib = strtoull(line + 9, NULL, 10) / 1024;
			break;
		}
	if (f)
		fclose(f);
}

tlcm_profile_t tlcm_profile_classify(const tlcm_hw_t *hw)
{
	if (hw->cpus <= 1 && hw->ram_mib < 1024 && hw->max_mhz < 1000)
		return TLCM_PROFILE_LOW_POWER;
	if (hw->cpus <= 4 && hw->ram_mib < 4096)
		return TLCM_PROFILE_BALANCED;
	return TLCM_PROFILE_HIGH_PERFORMANCE;
}

int tlcm_profile_select(const char *name, char *why, size_t whylen)
{
	const char *from = "--profile";
	if (!name || !*name) {
		name = getenv("TINYLCM_PROFILE");
		from = "TINYLCM_PROFILE";
	}
	if (name && *name) {
		tlcm_profile_t p;
		if (tlcm_profile_parse(name, &p))
			return tlcm_fail(why, whylen, TLCM_EINVAL,
					 "%s: unknown profile '%s' (expected "
					 "LOW_POWER, BALANCED or "
					 "HIGH_PERFORMANCE)", from, name);
		current = p;
		origin = from;
		memset(&hw_seen, 0, sizeof hw_seen);
		return 0;
	}
	tlcm_hw_read("/", &hw_seen);
	current = tlcm_profile_classify(&hw_seen);
	origin = "detected";
	return 0;
}

const tlcm_profile_scale_t *tlcm_profile_active(void)
{
	return strcmp(origin, "default") ? tlcm_profile_scale(current) : NULL;
}

tlcm_profile_t tlcm_profile_current(void)
{
	return current;
}

const char *tlcm_profile_origin(void)
{
	return origin;
}

const tlcm_hw_t *tlcm_profile_hw(void)
{
	return &hw_seen;
}

void tlcm_profile_describe(char *buf, size_t len)
{
	const tlcm_profile_scale_t *s = tlcm_profile_scale(current);
	char hw[160] = "";
	if (!strcmp(origin, "detected")) {
		char mhz[32] = "max MHz unknown";
		if (hw_seen.max_mhz)
			snprintf(mhz, sizeof mhz, "max %u MHz", hw_seen.max_mhz);
		snprintf(hw, sizeof hw, ": %d cpu%s, %s, %llu MiB RAM",
			 hw_seen.cpus, hw_seen.cpus == 1 ? "" : "s", mhz,
			 (unsigned long long)hw_seen.ram_mib);
	}
	snprintf(buf, len, "%s (%s%s; workers <= %d, rings x%g, periods x%g, "
		 "batches x%g)", tlcm_profile_name(current), origin, hw,
		 s->max_workers, s->ring, s->period, s->batch);
}
