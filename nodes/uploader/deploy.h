/* deploy.h — the deployment directory: how the uploader (which pulls a
 * device's graph from the core) and `tinylcm run --deploy-dir DIR` (which
 * swaps it in, engine/cli/deploy.c) talk, through files in DIR
 * (docs/graphs.md, "Deployment"):
 *
 *   pending.yaml       a new graph from the core: written by the uploader,
 *                      taken (renamed to trying.yaml) by the runner
 *   fetched.etag       the ETag of the last graph the uploader wrote
 *                      (its If-None-Match)
 *   trying.yaml        the graph in its grace period (runner)
 *   current.yaml       the last graph that passed it (runner)
 *   outcomes/T.json    what became of a graph, T = wall time in ns (20
 *                      digits): written by the runner, sent to the core
 *                      and then deleted by the uploader
 *
 * Every file is written under a temporary name, fsync'd, renamed into
 * place and its directory fsync'd: a crash leaves the old file or the new
 * one, never a part. A graph's ETag is the SHA-256 of its bytes (hex).
 */
#ifndef TLCM_UPLOADER_DEPLOY_H
#define TLCM_UPLOADER_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UP_DEPLOY_PENDING "pending.yaml"
#define UP_DEPLOY_FETCHED "fetched.etag"
#define UP_DEPLOY_TRYING "trying.yaml"
#define UP_DEPLOY_CURRENT "current.yaml"
#define UP_DEPLOY_OUTCOMES "outcomes"
#define UP_DEPLOY_MAX (1 << 20)  /* a graph file's bytes, at most */
#define UP_DEPLOY_DETAIL 1024    /* an outcome's detail, at most */

/* Make DIR and DIR/outcomes when missing. 0, or TLCM_EIO with why. */
int up_deploy_dirs(const char *dir, char *why, size_t cap);

/* DIR/name := data, atomically (see above). 0, or TLCM_E* with why. */
int up_deploy_write(const char *dir, const char *name, const void *data,
		    size_t len, char *why, size_t cap);

/* The bytes of path (at most max; a NUL is added) into *out (free it).
 * 0, TLCM_ENOENT, TLCM_ENOSPC (larger), or TLCM_EIO with why. */
int up_deploy_read(const char *path, size_t max, char **out, size_t *len,
		   char *why, size_t cap);

/* The ETag of bytes: SHA-256, 64 lower-case hex characters. */
void up_deploy_etag(const void *p, size_t n, char out[65]);

/* Record an outcome (applied, rolled_back, invalid) of the graph with
 * this ETag in DIR/outcomes; detail is cut to UP_DEPLOY_DETAIL bytes. */
int up_deploy_outcome(const char *dir, const char *etag, const char *outcome,
		      const char *detail, char *why, size_t cap);

/* The oldest outcome file's name (T.json) in DIR/outcomes into name.
 * 0, or TLCM_ENOENT when there is none. */
int up_deploy_next_outcome(const char *dir, char *name, size_t cap);

#endif
