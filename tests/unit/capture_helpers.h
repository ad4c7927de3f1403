/* capture_helpers.h — shared by the capture tests: a sink node that verifies
 * and records every Frame it receives, "spy" copies of the capture node
 * types that save their describe() JSON at fini (their error counters),
 * a runner that loads a graph from text and runs it with the engine's log
 * (stderr) captured into a buffer, and PNG/JPEG encoders for test images.
 *
 * Test code only: the recording lives in one global (cap_rec), reset by
 * cap_run(). The sink never calls CHECK (tlcm_test.h's counters are per
 * file); it records what it saw, and the tests check that. While a graph
 * runs, fd 2 goes to /tmp/tlcm-capture-log-*: a sanitizer report that
 * kills the test lands there (the file is left behind), and CAP_VERBOSE=1
 * echoes every run's log.
 */
#ifndef TLCM_TEST_CAPTURE_HELPERS_H
#define TLCM_TEST_CAPTURE_HELPERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/sched.h"

typedef struct cap_frame {
	uint64_t id, trace, time_ns, index;
	uint32_t width, height;
	int format;
	int32_t label;
	bool label_present;
	uint32_t checksum; /* FNV-1a of the pixels */
	char source[128];
	uint8_t *pixels;   /* a copy, when cap_rec.keep_pixels */
} cap_frame_t;

typedef struct cap_record {
	cap_frame_t *frames; /* the first `max` frames */
	size_t n, max;
	atomic_size_t count; /* frames received (also beyond max) */
	size_t bad;          /* failed verification or trace != id, etc. */
	char bad_why[256];
	bool keep_pixels;
	char describe[4096]; /* the spy node's describe() at fini */
	char log[65536];     /* the engine log of the run */
} cap_record_t;

extern cap_record_t cap_rec;

/* Run graph text (YAML) with the built-in nodes plus `capsink` and the
 * spies `spy.idx`, `spy.images`, `spy.v4l2`. Fills res (caller calls
 * tlcm_run_result_fini) and cap_rec (frames, log). Returns the run's
 * status, or -1000 when the graph does not load (diagnostics in
 * cap_rec.log). duration_s > 0 stops the run after that long. */
int cap_run(const char *yaml, double duration_s, tlcm_run_result_t *res);

/* Frees what cap_rec holds. */
void cap_reset(void);

uint32_t cap_fnv1a(const void *p, size_t n);

/* Write n bytes to path (exits the test on failure). */
void cap_write_file(const char *path, const void *data, size_t n);

/* Encoders: a malloc'd PNG (png_image format, e.g. PNG_FORMAT_GRAY) or
 * JPEG (quality 95, 1 or 3 channels) of w x h pixels; *len its size. */
uint8_t *cap_png_encode(const uint8_t *px, uint32_t w, uint32_t h,
			uint32_t format, size_t *len);
uint8_t *cap_jpeg_encode(const uint8_t *px, uint32_t w, uint32_t h,
			 int channels, size_t *len);
/* A smooth malloc'd test picture of w x h x ch (JPEG-friendly). */
uint8_t *cap_picture(uint32_t w, uint32_t h, int ch, int seed);
double cap_mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n);

#endif
