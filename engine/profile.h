/* profile.h — hardware profiles: LOW_POWER, BALANCED, HIGH_PERFORMANCE.
 *
 * A profile is chosen once per process (an engine singleton, set by the
 * CLI before graphs load): `tinylcm run --profile P`, else the environment
 * variable TINYLCM_PROFILE, else detected from the CPU count, the highest
 * CPU frequency (sysfs cpufreq) and the RAM. It only changes defaults —
 * values a graph file or --set gives always win — by the multipliers of
 * the table in profile.c (docs/profiles.md):
 *
 *   workers (settings.workers not given)  min(cores, cap)
 *   edge capacity (edge.capacity not given)  64KiB x ring
 *   params flagged TLCM_PARAM_PERIOD (intervals)  default x period
 *   params flagged TLCM_PARAM_BATCH (batch sizes) default x batch
 *
 * Nodes read the profile with tlcm_profile(ctx) (engine/node.h).
 */
#ifndef TLCM_PROFILE_H
#define TLCM_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	TLCM_PROFILE_LOW_POWER,
	TLCM_PROFILE_BALANCED,
	TLCM_PROFILE_HIGH_PERFORMANCE,
} tlcm_profile_t;

/* What a profile does to defaults. */
typedef struct tlcm_profile_scale {
	int max_workers;  /* workers = min(online cores, this) */
	double ring;      /* default edge capacity multiplier */
	double period;    /* TLCM_PARAM_PERIOD defaults (timers, polls) */
	double batch;     /* TLCM_PARAM_BATCH defaults (batch sizes) */
} tlcm_profile_scale_t;

/* The hardware as detection saw it. */
typedef struct tlcm_hw {
	int cpus;          /* online */
	unsigned max_mhz;  /* 0: no cpufreq in sysfs (VMs, containers) */
	uint64_t ram_mib;  /* MemTotal */
} tlcm_hw_t;

const char *tlcm_profile_name(tlcm_profile_t p);
/* "LOW_POWER", "BALANCED", "HIGH_PERFORMANCE" (case-insensitive, '-' for
 * '_'); TLCM_EINVAL for anything else. */
int tlcm_profile_parse(const char *s, tlcm_profile_t *out);
const tlcm_profile_scale_t *tlcm_profile_scale(tlcm_profile_t p);

/* Read the hardware under root ("/" normally; tests pass a fake tree):
 * root/sys/devices/system/cpu/online, .../cpu*\/cpufreq/cpuinfo_max_freq,
 * root/proc/meminfo. */
void tlcm_hw_read(const char *root, tlcm_hw_t *hw);
/* The profile for hw:
 *   LOW_POWER         cpus <= 1, RAM < 1 GiB and max_mhz < 1000
 *                     (max_mhz 0, unknown, counts as < 1000)
 *   BALANCED          otherwise cpus <= 4 and RAM < 4 GiB
 *   HIGH_PERFORMANCE  otherwise */
tlcm_profile_t tlcm_profile_classify(const tlcm_hw_t *hw);

/* Choose the process's profile: name (from --profile) if not NULL, else
 * $TINYLCM_PROFILE if set and not empty, else detected. On an unknown
 * name returns TLCM_EINVAL with why saying where it came from and what is
 * valid. Without a call the profile is BALANCED (multipliers 1). */
int tlcm_profile_select(const char *name, char *why, size_t whylen);
tlcm_profile_t tlcm_profile_current(void);
/* The multipliers graphs load with: NULL until tlcm_profile_select() was
 * called (programs that embed the engine keep the plain defaults). */
const tlcm_profile_scale_t *tlcm_profile_active(void);
/* How it was chosen ("--profile", "TINYLCM_PROFILE", "detected",
 * "default") and the hardware read (zeros unless detected or read). */
const char *tlcm_profile_origin(void);
const tlcm_hw_t *tlcm_profile_hw(void);
/* One line for logs: "HIGH_PERFORMANCE (detected: 2 cpus, max MHz
 * unknown, 24105 MiB RAM; workers <= 8, rings x2, periods x0.5, batches
 * x2)". */
void tlcm_profile_describe(char *buf, size_t len);

#endif
