/* fuzz_tflite.c — libFuzzer target for the .tflite importer and the model
 * loader behind it: any accepted file converts to a .tlm that the loader
 * either refuses with a reason or accepts and frees. Seeds are the test
 * cases `test_tflite --write-cases` writes. */
#include <stdint.h>
#include <stdlib.h>

#include "nodes/features/model.h"
#include "nodes/features/tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *tlm = NULL;
	size_t len = 0;
	char why[256];
	if (tlcm_tflite_to_tlm(data, size, &tlm, &len, why, sizeof why) == 0) {
		tlcm_model_t *m = NULL;
		if (tlcm_model_from_buffer(&m, tlm, len, "fuzz", why,
					   sizeof why) == 0)
			tlcm_model_free(m);
		free(tlm);
	}
	return 0;
}
