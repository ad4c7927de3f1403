/* frame.h — emitting one captured image as a Frame (schemas/frame.fbs),
 * shared by the capture nodes.
 *
 * tlcm_capture_emit() takes a new id from tlcm_unique_id() (unique on the
 * device across restarts), makes it the trace id of the message, stamps
 * the capture time and builds the FlatBuffer directly in ring memory.
 */
#ifndef TLCM_CAPTURE_FRAME_H
#define TLCM_CAPTURE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/node.h"

typedef struct tlcm_capture_frame {
	uint32_t width, height, channels; /* channels 1 (Gray8) or 3 (Rgb8) */
	const uint8_t *pixels;            /* height * width * channels */
	int32_t label;                    /* -1: unknown */
	const char *source;               /* file name, device */
	uint64_t index;                   /* position in the source */
	uint64_t time_ns;                 /* CLOCK_REALTIME; 0 = now */
} tlcm_capture_frame_t;

/* Emit f on output port `port`. 0 when sent (or dropped by an edge's
 * policy, which the engine counts), else an error, logged here with the
 * node id (a frame too large for the edge names the size to configure).
 * *id (may be NULL) gets the frame id. */
int tlcm_capture_emit(tlcm_ctx_t *ctx, int port, const tlcm_capture_frame_t *f,
		      uint64_t *id);

/* CLOCK_REALTIME now, ns. */
uint64_t tlcm_capture_realtime_ns(void);

/* s as the body of a JSON string (quotes, backslashes and control
 * characters escaped), truncated to fit cap (always NUL-terminated). */
void tlcm_capture_json_escape(char *out, size_t cap, const char *s);

/* splitmix64: the next draw from state *s (seeds and draws are the same
 * on every platform, so a seeded order is reproducible anywhere). */
uint64_t tlcm_capture_rand(uint64_t *s);
/* Fisher-Yates shuffle of a[0..n) with draws from *rng. */
void tlcm_capture_shuffle(uint32_t *a, size_t n, uint64_t *rng);

/* Parse list parameter `name` of class numbers (0..255) into mask (*n
 * entries); 0, or TLCM_EINVAL logged naming the bad entry. */
int tlcm_capture_class_list(tlcm_ctx_t *ctx, const char *name,
			    bool mask[256], size_t *n);

/* The last component of a path ("a/b/c.png" -> "c.png"). */
const char *tlcm_capture_basename(const char *path);

#endif
