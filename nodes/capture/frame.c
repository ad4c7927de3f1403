/* frame.c — build and emit a Frame message for the capture nodes: id from
 * tlcm_unique_id() as the trace id, pixels copied straight into the ring
 * slot (see frame.h).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/log.h"
#include "fb/frame_fb.h"
#include "nodes/capture/frame.h"

uint64_t tlcm_capture_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *tlcm_capture_basename(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

void tlcm_capture_json_escape(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	if (!cap)
		return;
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t k;
		if (c == '"' || c == '\\')
			k = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
		else if (c < 0x20)
			k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
		else
			esc[0] = (char)c, k = 1;
		if (n + k >= cap)
			break;
		memcpy(out + n, esc, k);
		n += k;
	}
	out[n] = 0;
}

int tlcm_capture_emit(tlcm_ctx_t *ctx, int port, const tlcm_capture_frame_t *f,
		      uint64_t *id_out)
{
	size_t npix = (size_t)f->width * f->height * f->channels;
	size_t slen = f->source ? strlen(f->source) : 0;
	/* table + vtable + vector and string headers, with alignment slack */
	size_t max = npix + slen + 256;
	uint64_t id = tlcm_unique_id(ctx);
	if (id_out)
		*id_out = id;
	tlcm_set_trace(ctx, id);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, port, &b, max);
	if (rc) {
		if (rc == TLCM_ETOOBIG) { /* a message may use half a ring */
			size_t need = 4096;
			while (need < 2 * (max + 64))
				need *= 2;
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "frame %ux%ux%u "
				      "(%zu bytes) does not fit the output "
				      "edge: give the edge a capacity of at "
				      "least %zuKiB", (unsigned)f->width,
				      (unsigned)f->height,
				      (unsigned)f->channels, max, need / 1024);
		} else {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot emit frame "
				      "%llu: %s", (unsigned long long)id,
				      tlcm_strerror(rc));
		}
		return rc;
	}
	uint8_t *px = NULL;
	tlcm_fbb_ref_t pixels = tlcm_fbb_vec_alloc(&b, npix, 1, 1,
						   (void **)&px);
	if (px)
		memcpy(px, f->pixels, npix);
	tlcm_fbb_ref_t source = f->source ? tlcm_fbb_string(&b, f->source,
							     slen)
					  : 0;
	tlcm_Frame_start(&b);
	tlcm_Frame_add_id(&b, id);
	tlcm_Frame_add_time_ns(&b, f->time_ns ? f->time_ns
					     : tlcm_capture_realtime_ns());
	tlcm_Frame_add_width(&b, f->width);
	tlcm_Frame_add_height(&b, f->height);
	tlcm_Frame_add_format(&b, f->channels == 3 ? tlcm_PixelFormat_Rgb8
						   : tlcm_PixelFormat_Gray8);
	tlcm_Frame_add_pixels(&b, pixels);
	tlcm_Frame_add_label(&b, f->label);
	if (source)
		tlcm_Frame_add_source(&b, source);
	tlcm_Frame_add_index(&b, f->index);
	rc = tlcm_emit_end(ctx, port, &b, tlcm_Frame_end(&b),
			   tlcm_Frame_IDENTIFIER);
	if (rc && rc != TLCM_EAGAIN) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot emit frame %llu: %s",
			      (unsigned long long)id, tlcm_strerror(rc));
		return rc;
	}
	return 0;
}
