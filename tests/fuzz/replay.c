/* replay.c — run a libFuzzer target over files, for builds without
 * libFuzzer (gcc): `replay FILE...` feeds each file to the target once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/tlcm_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		size_t len;
		unsigned char *b = tlcm_test_read_file(argv[i], &len);
		CHECK_INT(LLVMFuzzerTestOneInput(b, len), 0);
		free(b);
	}
	return tlcm_test_done();
}
