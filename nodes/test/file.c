/* file.c — node `file`: reads a file through the io_uring reactor and
 * emits it as Blob messages of up to `chunk` bytes (seq 1, 2, ...), then ends
 * the stream (or starts over with loop: true). A missing or unreadable
 * file fails the node's start with the path in the message. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/io.h"
#include "engine/log.h"
#include "engine/node.h"
#include "fb/blob_fb.h"
#include "nodes/test/test_nodes.h"

typedef struct {
	int fd;
	uint8_t *buf;
	uint64_t off, seq;
	size_t chunk;
	bool loop;
} file_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "BLOB", "the file's bytes, chunk by chunk", 0}, {0}};

static const tlcm_param_desc_t params[] = {
	{"path", TLCM_P_PATH, NULL, "file to read", 0, 0, NULL, 0},
	{"chunk", TLCM_P_SIZE, "4KiB", "bytes per message", 1, 1 << 20, NULL,
	 0},
	{"loop", TLCM_P_BOOL, "false", "start over at the end", 0, 0, NULL, 0},
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	file_t *f = st;
	const char *path = tlcm_param_str(ctx, "path");
	f->chunk = (size_t)tlcm_param_size(ctx, "chunk");
	f->loop = tlcm_param_bool(ctx, "loop");
	f->buf = malloc(f->chunk);
	if (!f->buf)
		return TLCM_ENOMEM;
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		int rc = tlcm_io_errno(-errno);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot open %s: %s", path,
			      strerror(errno));
		free(f->buf); /* fini is not called after a failed init */
		f->buf = NULL;
		return rc;
	}
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	file_t *f = st;
	(void)now;
	ssize_t k = tlcm_io_pread(f->fd, f->buf, f->chunk, f->off);
	if (k < 0) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "read at offset %llu: %s",
			      (unsigned long long)f->off, tlcm_strerror((int)k));
		return (int)k;
	}
	if (k == 0) { /* end of file */
		if (!f->loop || f->off == 0)
			return TLCM_ECLOSED;
		f->off = 0;
		return 0;
	}
	f->off += (uint64_t)k;
	f->seq++;
	tlcm_set_trace(ctx, f->seq);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, (size_t)k + 64);
	if (rc)
		return rc;
	tlcm_fbb_ref_t data = tlcm_fbb_vec(&b, f->buf, (size_t)k, 1, 1);
	tlcm_Blob_start(&b);
	tlcm_Blob_add_seq(&b, f->seq);
	tlcm_Blob_add_data(&b, data);
	tlcm_Blob_add_checksum(&b, tlcm_fnv1a(f->buf, (size_t)k));
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_Blob_end(&b), tlcm_Blob_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	file_t *f = st;
	(void)ctx;
	if (f->fd > 0)
		close(f->fd);
	f->fd = -1;
	free(f->buf);
	f->buf = NULL;
}

const tlcm_node_type_t tlcm_node_file = {
	.name = "file",
	.doc = "read a file through io_uring and emit it in Blob chunks",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(file_t),
	.init = init,
	.tick = tick,
	.fini = fini,
};
