/* deadline.h — absolute times for the link's timed waits. */
#ifndef TLCM_LINK_DEADLINE_H
#define TLCM_LINK_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* *ts = now on clock clk + ns. */
static inline void link_deadline(clockid_t clk, uint64_t ns,
				 struct timespec *ts)
{
	clock_gettime(clk, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
}

#endif
