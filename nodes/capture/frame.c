/* frame.c — build and emit a Frame message for the capture nodes: id from
 * tlcm_unique_id() as the trace id, pixels copied straight into the ring
 * slot (see frame.h).
 */
#include <stdio.h>
#include <stdlib.h>
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

uint64_t tlcm_capture_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

void tlcm_capture_shuffle(uint32_t *a, size_t n, uint64_t *rng)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(((unsigned __int128)tlcm_capture_rand(rng) *
				     i) >> 64);
		uint32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

int tlcm_capture_class_list(tlcm_ctx_t *ctx, const char *name,
			    bool mask[256], size_t *n)
{
	const char *const *items;
	*n = tlcm_param_list(ctx, name, &items);
	for (size_t i = 0; i < *n; i++) {
		char *end;
		long v = strtol(items[i], &end, 10);
		if (!*items[i] || *end || v < 0 || v > 255) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: '%s' is not a "
				      "class number (0 to 255)", name,
				      items[i]);
			return TLCM_EINVAL;
		}
		mask[v] = true;
	}
	return 0;
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
