/* link.h — the uploader's connectivity manager and sync policy, as plain
 * functions of their inputs (no I/O, no clock): the state machine of the
 * link, the link quality from a ping, the backoff delay and the energy-
 * aware sync interval. nodes/uploader/uploader.c feeds them; the unit
 * test drives them directly.
 *
 * States (values as schemas/link.fbs):
 *
 *   offline --attempt--> reconnecting --success--> online
 *      ^                      |                      |
 *      |                   failure                failure
 *      |                      v                      v
 *      +<---- offline_after failures in a row --- unstable
 *                                                    |
 *                       stable_after successes ------+--> online
 *
 * A "success" is any HTTP response (the link works even when the core
 * answers 503); a "failure" is none: refused, reset, timed out, TLS.
 */
#ifndef TLCM_UPLOADER_LINK_H
#define TLCM_UPLOADER_LINK_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
	UP_OFFLINE = 0,
	UP_ONLINE = 1,
	UP_UNSTABLE = 2,
	UP_RECONNECTING = 3,
} up_state_t;

typedef enum {
	UP_Q_UNKNOWN = 0,
	UP_Q_LOW = 1,
	UP_Q_MEDIUM = 2,
	UP_Q_HIGH = 3,
} up_quality_t;

typedef struct up_link {
	up_state_t state;
	up_quality_t quality;
	uint64_t latency_ns;   /* last ping */
	unsigned failures;     /* in a row */
	unsigned successes;    /* in a row, counted while unstable */
	unsigned offline_after, stable_after;
	uint64_t transitions;
} up_link_t;

const char *up_state_name(up_state_t s);
const char *up_quality_name(up_quality_t q);

/* Starts offline, quality unknown. */
void up_link_init(up_link_t *l, unsigned offline_after,
		  unsigned stable_after);
/* Each returns true when the state changed (prev gets the old one). */
bool up_link_attempt(up_link_t *l, up_state_t *prev);
bool up_link_success(up_link_t *l, up_state_t *prev);
bool up_link_failure(up_link_t *l, up_state_t *prev);
/* A ping took latency_ns: the quality (true when it changed). */
bool up_link_probe(up_link_t *l, uint64_t latency_ns);

/* docs/api.md: below 100 ms high, below 500 ms medium, else low. */
up_quality_t up_quality_of(uint64_t latency_ns);

/* Full jitter: random(0, min(cap, base * 2^attempt)), rnd a uniformly
 * random 64-bit number. */
uint64_t up_backoff_ns(uint64_t base_ns, uint64_t cap_ns, unsigned attempt,
		       uint64_t rnd);

typedef struct up_energy {
	double battery;       /* percent; < 0: none known (mains) */
	bool charging;
	uint64_t backlog;     /* packages queued */
} up_energy_t;

typedef struct up_schedule {
	uint64_t base_ns;
	double battery_low, battery_high; /* percent */
	uint64_t backlog_high;            /* packages; 0: never shorten */
} up_schedule_t;

/* The interval to the next sync: base; twice that when the battery is
 * below battery_low and not charging; a quarter when the backlog is at
 * least backlog_high and the battery at least battery_high, charging, or
 * absent. *why names the rule ("base", "battery_low", "backlog"). */
uint64_t up_sync_interval(const up_schedule_t *s, const up_energy_t *e,
			  const char **why);

#endif
