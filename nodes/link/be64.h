/* be64.h — big-endian 64-bit fields of the link's store keys and records
 * (sequence numbers sort as bytes in RocksDB). */
#ifndef TLCM_LINK_BE64_H
#define TLCM_LINK_BE64_H

#include <stdint.h>

static inline void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#endif
