/* fetch.c — the updater's download into a file: a body sink for the HTTP
 * client (nodes/uploader/http.c) that writes a 206 from our offset, or a
 * 200 that restarts the file, with pwrite() as it arrives. See fetch.h.
 *
 * The download asks for `Accept-Encoding: identity`: a Range counts bytes
 * of the encoded entity, so a transparently decompressed body could not
 * be resumed by its decoded length.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "engine/error.h"
#include "nodes/updater/fetch.h"

/* The first body bytes: a 206 must start at our offset; a 200 to a Range
 * (the server ignored it, or If-Range did not match) brings the whole
 * entity again. */
static bool decide(upd_sink_t *s, const up_http_head_t *hd)
{
	s->decided = true;
	if (hd->status == 206) {
		if (!hd->has_range || hd->range_first != s->offset) {
			s->bad_range = true;
			return false;
		}
	} else if (s->offset) {
		if (ftruncate(s->fd, 0)) {
			s->write_errno = errno;
			return false;
		}
		s->offset = 0;
		s->restarted = true;
	}
	return true;
}

static bool on_body(void *arg, const up_http_head_t *hd, const char *p,
		    size_t len)
{
	upd_sink_t *s = arg;
	if (!s->decided && !decide(s, hd))
		return false;
	if (s->offset + len > s->limit) {
		s->too_large = true;
		return false;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t w = pwrite(s->fd, p + done, len - done,
				   (off_t)(s->offset + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->write_errno = w < 0 ? errno : EIO;
			return false;
		}
		done += (size_t)w;
	}
	s->offset += len;
	s->received += len;
	s->since_sync += len;
	if (s->sync_every && s->since_sync >= s->sync_every) {
		s->since_sync = 0;
		if (fdatasync(s->fd)) {
			s->write_errno = errno;
			return false;
		}
		if (s->on_durable)
			s->on_durable(s->arg, s->offset);
	}
	return true;
}

int upd_fetch_get(up_http_t *h, const char *url, const char *const *hdrs,
		  const char *if_range, upd_sink_t *sink)
{
	const char *all[8];
	char ifr[200];
	size_t n = 0;
	for (; hdrs && hdrs[n]; n++) {
		if (n == 6)
			return TLCM_EINVAL;
		all[n] = hdrs[n];
	}
	if (sink->offset && if_range && *if_range) {
		snprintf(ifr, sizeof ifr, "If-Range: %s", if_range);
		all[n++] = ifr;
	}
	all[n] = NULL;
	sink->received = sink->since_sync = 0;
	sink->decided = sink->restarted = false;
	sink->too_large = sink->bad_range = false;
	sink->write_errno = 0;
	return up_http_send(h, &(up_http_req_t){
				       .method = "GET",
				       .path = url,
				       .hdrs = all,
				       .range_from = sink->offset,
				       .identity = true,
				       .sink = on_body,
				       .sink_arg = sink,
			       });
}
