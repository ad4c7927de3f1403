/* link.c — the uploader's connectivity state machine, link quality,
 * backoff and sync interval (pure functions; see link.h).
 */
#include "nodes/uploader/link.h"

const char *up_state_name(up_state_t s)
{
	switch (s) {
	case UP_OFFLINE: return "offline";
	case UP_ONLINE: return "online";
	case UP_UNSTABLE: return "unstable";
	case UP_RECONNECTING: return "reconnecting";
	}
	return "?";
}

const char *up_quality_name(up_quality_t q)
{
	switch (q) {
	case UP_Q_UNKNOWN: return "unknown";
	case UP_Q_LOW: return "low";
	case UP_Q_MEDIUM: return "medium";
	case UP_Q_HIGH: return "high";
	}
	return "?";
}

void up_link_init(up_link_t *l, unsigned offline_after, unsigned stable_after)
{
	*l = (up_link_t){.state = UP_OFFLINE,
			 .offline_after = offline_after ? offline_after : 1,
			 .stable_after = stable_after ? stable_after : 1};
}

static bool go(up_link_t *l, up_state_t to, up_state_t *prev)
{
	if (prev)
		*prev = l->state;
	if (l->state == to)
		return false;
	l->state = to;
	l->transitions++;
	return true;
}

bool up_link_attempt(up_link_t *l, up_state_t *prev)
{
	return go(l, l->state == UP_OFFLINE ? UP_RECONNECTING : l->state,
		  prev);
}

bool up_link_success(up_link_t *l, up_state_t *prev)
{
	l->failures = 0;
	up_state_t to = UP_ONLINE;
	if (l->state == UP_UNSTABLE && ++l->successes < l->stable_after)
		to = UP_UNSTABLE;
	if (to == UP_ONLINE)
		l->successes = 0;
	return go(l, to, prev);
}

bool up_link_failure(up_link_t *l, up_state_t *prev)
{
	l->successes = 0;
	l->failures++;
	up_state_t to;
	switch (l->state) {
	case UP_ONLINE:
		to = l->failures >= l->offline_after ? UP_OFFLINE
						     : UP_UNSTABLE;
		break;
	case UP_UNSTABLE:
		to = l->failures >= l->offline_after ? UP_OFFLINE
						     : UP_UNSTABLE;
		break;
	default: /* a reconnect that failed, or still offline */
		to = UP_OFFLINE;
		break;
	}
	return go(l, to, prev);
}

up_quality_t up_quality_of(uint64_t latency_ns)
{
	if (latency_ns < 100000000u)
		return UP_Q_HIGH;
	if (latency_ns < 500000000u)
		return UP_Q_MEDIUM;
	return UP_Q_LOW;
}

bool up_link_probe(up_link_t *l, uint64_t latency_ns)
{
	up_quality_t q = up_quality_of(latency_ns);
	l->latency_ns = latency_ns;
	if (q == l->quality)
		return false;
	l->quality = q;
	return true;
}

uint64_t up_backoff_ns(uint64_t base_ns, uint64_t cap_ns, unsigned attempt,
		       uint64_t rnd)
{
	uint64_t hi = base_ns;
	for (unsigned i = 0; i < attempt && hi < cap_ns; i++)
		hi = hi > UINT64_MAX / 2 ? UINT64_MAX : hi * 2;
	if (hi > cap_ns)
		hi = cap_ns;
	return hi ? rnd % (hi + 1) : 0;
}

uint64_t up_sync_interval(const up_schedule_t *s, const up_energy_t *e,
			  const char **why)
{
	bool has = e->battery >= 0;
	if (has && e->battery < s->battery_low && !e->charging) {
		*why = "battery_low";
		return s->base_ns > UINT64_MAX / 2 ? UINT64_MAX
						   : s->base_ns * 2;
	}
	if (s->backlog_high && e->backlog >= s->backlog_high &&
	    (!has || e->charging || e->battery >= s->battery_high)) {
		*why = "backlog";
		return s->base_ns / 4;
	}
	*why = "base";
	return s->base_ns;
}
