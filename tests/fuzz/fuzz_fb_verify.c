/* fuzz_fb_verify.c — libFuzzer target for the generated verifiers.
 *
 * Any input must be either rejected or, once accepted, readable in full
 * without a read outside the input (the input is copied into an exactly
 * sized heap block so ASan sees overruns). Built with clang and
 * -DTLCM_FUZZ=ON as a libFuzzer binary; otherwise replay.c supplies a main
 * that runs the target over files, so every build exercises the corpus.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fb/walk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *c = malloc(size ? size : 1);
	if (!c)
		return 0;
	memcpy(c, data, size);
	const char *why;
	volatile uint64_t sink = 0;
	if (t_all_All_verify_as_root(c, size, &why) == 0)
		sink += walk_all(t_all_All_as_root(c));
	if (t_all_All_verify_as_root_size_prefixed(c, size, &why) == 0)
		sink += walk_all(t_all_All_as_root_size_prefixed(c));
	if (t_adv_Root_verify_as_root(c, size, &why) == 0)
		sink += walk_adv(t_adv_Root_as_root(c));
	(void)sink;
	free(c);
	return 0;
}
