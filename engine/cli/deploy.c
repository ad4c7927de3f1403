/* deploy.c — `tinylcm run FILE --deploy-dir DIR [--grace S]`: run a graph
 * and swap in the graphs the uploader pulls from the core into DIR
 * (nodes/uploader/deploy.h has the directory's files; docs/graphs.md,
 * "Deployment").
 *
 * The run's watch (engine/sched.h) looks for DIR/pending.yaml four times
 * a second. A pending graph is renamed to trying.yaml and checked as
 * `tinylcm check` does; an invalid one is refused while the running graph
 * goes on. A valid one: the running graph is stopped and drained (its
 * nodes snapshot their state into the store under their ids), the new
 * graph starts on the same store (nodes with the same id and type restore
 * that state) and is watched for the grace period. A node failing, one
 * restarting, or the graph ending with an error in that time rolls back:
 * the previous graph file starts again. Healthy for the whole period,
 * trying.yaml is renamed to current.yaml. Every outcome (applied,
 * rolled_back, invalid) goes to DIR/outcomes for the uploader to report.
 * current.yaml is only ever replaced by a rename, so the last good graph
 * survives any crash; a trying.yaml found at start is a trial a crash cut
 * short, reported rolled_back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cli/deploy.h"
#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/updater/swap.h"
#include "nodes/uploader/deploy.h"

#define WHO "deploy"

typedef struct {
	const tlcm_cli_deploy_opts_t *o;
	char pending[4200], trying[4200], current[4200];
	/* the graph file to go back to, and its ETag */
	char good[4200], good_etag[65];
	/* the trial of trying.yaml */
	bool trial, committed;
	char trial_etag[65];
	char unhealthy[700];
	/* a pending graph checked and loaded: stop for the swap */
	tlcm_graph_t *next;
	char next_etag[65];
	const char *store; /* the running graph's settings.store */
	bool user_stop;
} runner_t;

/* CLI singleton: a signal between two runs (each run handles its own) */
static volatile sig_atomic_t between_signals;

static void on_signal(int sig)
{
	(void)sig;
	between_signals = 1;
}

static int file_etag(const char *path, char out[65], char *why, size_t cap)
{
	char *b;
	size_t n;
	int rc = up_deploy_read(path, UP_DEPLOY_MAX, &b, &n, why, cap);
	if (rc == TLCM_ENOENT)
		snprintf(why, cap, "%.300s: no such file", path);
	if (rc)
		return rc;
	up_deploy_etag(b, n, out);
	free(b);
	return 0;
}

static void outcome(runner_t *R, const char *etag, const char *what,
		    const char *detail)
{
	char why[400];
	if (up_deploy_outcome(R->o->dir, etag, what, detail, why, sizeof why))
		tlcm_error(WHO, "cannot record the outcome %s of %.12s…: %s",
			   what, etag, why);
}

/* The problems of a graph file, one line each, "; " between. */
static void diag_text(const tlcm_diag_t *d, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = 0;
	for (size_t i = 0; i < d->n && n + 1 < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "; " : "",
				      d->msgs[i]);
}

static int load(runner_t *R, const char *path, tlcm_graph_t **g,
		char *problems, size_t cap)
{
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(g, path, R->o->reg, R->o->sets, R->o->nsets,
				 &d);
	if (rc) {
		diag_text(&d, problems, cap);
		for (size_t i = 0; i < d.n; i++)
			tlcm_error(WHO, "%s", d.msgs[i]);
	}
	tlcm_diag_fini(&d);
	return rc;
}

/* The trial passed its grace period: trying.yaml becomes current.yaml. */
static void commit(runner_t *R, const char *how)
{
	char why[600];
	R->committed = true;
	R->trial = false;
	if (upd_rename(R->trying, R->current, why, sizeof why)) {
		/* it runs, but would not come back after a restart */
		tlcm_error(WHO, "graph %.12s… is healthy but cannot become "
			   "current: %s", R->trial_etag, why);
		outcome(R, R->trial_etag, "rolled_back", why);
		return;
	}
	snprintf(R->good, sizeof R->good, "%s", R->current);
	memcpy(R->good_etag, R->trial_etag, sizeof R->good_etag);
	tlcm_info(WHO, "graph %.12s… %s: applied, now %s", R->trial_etag,
		  how, R->current);
	outcome(R, R->trial_etag, "applied", how);
}

/* DIR/pending.yaml, if there: taken and checked. true: a valid graph is
 * loaded into R->next (stop the running one for it). */
static bool take_pending(runner_t *R)
{
	if (access(R->pending, F_OK))
		return false;
	char etag[65], why[600];
	if (upd_rename(R->pending, R->trying, why, sizeof why)) {
		tlcm_error(WHO, "cannot take the pending graph: %s", why);
		return false;
	}
	if (file_etag(R->trying, etag, why, sizeof why)) {
		tlcm_error(WHO, "pending graph: %s", why);
		unlink(R->trying);
		return false;
	}
	if (!strcmp(etag, R->good_etag)) {
		tlcm_info(WHO, "pending graph %.12s… is the one running: "
			  "nothing to swap", etag);
		unlink(R->trying);
		outcome(R, etag, "applied", "already running");
		return false;
	}
	tlcm_info(WHO, "pending graph %.12s…: checking it", etag);
	char problems[UP_DEPLOY_DETAIL];
	tlcm_graph_t *g;
	if (load(R, R->trying, &g, problems, sizeof problems)) {
		tlcm_error(WHO, "graph %.12s… is invalid; %s goes on", etag,
			   R->good);
		outcome(R, etag, "invalid", problems);
		unlink(R->trying);
		return false;
	}
	const char *a = R->store ? R->store : "", *b = g->store ? g->store : "";
	if (strcmp(a, b))
		tlcm_warn(WHO, "graph %.12s… keeps its state in '%s', the "
			  "running one in '%s': node state is not carried "
			  "over", etag, b, a);
	else if (g->fresh_store)
		tlcm_warn(WHO, "graph %.12s… has fresh_store: true: its start "
			  "empties the store, node state is lost", etag);
	tlcm_info(WHO, "graph %.12s… ('%s', %zu nodes) is valid: stopping "
		  "the running graph to swap it in", etag, g->name, g->nnodes);
	R->next = g;
	memcpy(R->next_etag, etag, sizeof etag);
	return true;
}

static bool watch(void *arg, const tlcm_run_health_t *h)
{
	runner_t *R = arg;
	if (h->stop_requests)
		R->user_stop = true;
	if (R->trial && !R->committed) {
		const char *bad = h->status || h->failed ? h->why :
				  h->restarts ? "a node restarted after an "
						"error" : NULL;
		if (bad) {
			if (!R->unhealthy[0]) {
				snprintf(R->unhealthy, sizeof R->unhealthy,
					 "unhealthy %.1f s into its grace "
					 "period of %g s: %s", h->seconds,
					 R->o->grace, bad);
				tlcm_warn(WHO, "graph %.12s… %s", R->trial_etag,
					  R->unhealthy);
			}
			return true;
		}
		if (!h->stopping && h->seconds >= R->o->grace) {
			char how[100];
			snprintf(how, sizeof how, "healthy for its grace period "
				 "of %g s", R->o->grace);
			commit(R, how);
		}
		return false;
	}
	if (R->next)
		return true;
	if (h->stopping || R->user_stop)
		return false;
	return take_pending(R);
}

int tlcm_cli_deploy_run(const tlcm_cli_deploy_opts_t *o)
{
	runner_t R = {.o = o};
	char why[700];
	const char *dir = o->dir;
	if (up_deploy_dirs(dir, why, sizeof why)) {
		fprintf(stderr, "tinylcm run: --deploy-dir: %s\n", why);
		return 1;
	}
	snprintf(R.pending, sizeof R.pending, "%s/%s", dir, UP_DEPLOY_PENDING);
	snprintf(R.trying, sizeof R.trying, "%s/%s", dir, UP_DEPLOY_TRYING);
	snprintf(R.current, sizeof R.current, "%s/%s", dir, UP_DEPLOY_CURRENT);
	/* a trial a crash cut short: it did not prove itself */
	char etag[65];
	if (!access(R.trying, F_OK)) {
		if (!file_etag(R.trying, etag, why, sizeof why)) {
			tlcm_warn(WHO, "graph %.12s… was in its grace period "
				  "when the runner stopped: rolled back", etag);
			outcome(&R, etag, "rolled_back", "the runner stopped "
				"(a crash or power loss) during its grace "
				"period");
		}
		unlink(R.trying);
	}
	bool deployed = !access(R.current, F_OK);
	snprintf(R.good, sizeof R.good, "%s", deployed ? R.current : o->file);
	if (deployed)
		tlcm_info(WHO, "running the deployed graph %s instead of %s",
			  R.current, o->file);
	struct sigaction sa = {0}, old_int, old_term;
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	uint64_t end = o->duration > 0 ? tlcm_now_ns() +
		       (uint64_t)(o->duration * 1e9) : 0;
	int rc = 0;
	tlcm_graph_t *g = NULL;
	for (;;) {
		const char *path = R.trial ? R.trying : R.good;
		if (R.next) {
			g = R.next;
			R.next = NULL;
		} else {
			char problems[UP_DEPLOY_DETAIL];
			if (load(&R, path, &g, problems, sizeof problems)) {
				if (path == R.good && strcmp(R.good, o->file)) {
					/* the deployed graph does not load
					 * here (any more): the command line's */
					tlcm_error(WHO, "the deployed graph %s "
						   "does not load: running %s",
						   R.good, o->file);
					if (!file_etag(R.good, etag, why,
						       sizeof why))
						outcome(&R, etag, "rolled_back",
							problems);
					snprintf(R.good, sizeof R.good, "%s",
						 o->file);
					continue;
				}
				fprintf(stderr, "tinylcm: %s: not started\n",
					path);
				rc = 1;
				break;
			}
		}
		if (!R.trial && file_etag(path, R.good_etag, why, sizeof why))
			R.good_etag[0] = 0;
		if (between_signals) {
			tlcm_info(WHO, "stopped by a signal");
			if (R.trial) {
				outcome(&R, R.trial_etag, "rolled_back",
					"stopped by a signal before it ran");
				unlink(R.trying);
			}
			break;
		}
		double left = 0;
		if (end) {
			uint64_t now = tlcm_now_ns();
			if (now >= end)
				break;
			left = (double)(end - now) / 1e9;
		}
		R.store = g->store;
		R.user_stop = false;
		tlcm_run_opts_t ro = {.duration_s = left,
				      .handle_signals = true,
				      .quiet = o->quiet,
				      .headless = o->headless,
				      .watch = watch,
				      .watch_arg = &R};
		tlcm_run_result_t res;
		tlcm_info(g->name, "running %s (%zu nodes, %zu edges)%s", path,
			  g->nnodes, g->nedges, R.trial ? ", on trial" : "");
		int st = tlcm_graph_run(g, &ro, &res);
		char rwhy[sizeof res.why];
		snprintf(rwhy, sizeof rwhy, "%s", res.why[0] ? res.why :
			 st ? tlcm_strerror(st) : "");
		double secs = res.seconds;
		tlcm_run_result_fini(&res);
		const char *name = g->name;
		if (R.trial && !R.committed) {
			R.trial = false;
			if (st || R.unhealthy[0]) {
				char d[UP_DEPLOY_DETAIL];
				snprintf(d, sizeof d, "%s", R.unhealthy[0] ?
					 R.unhealthy : rwhy);
				if (!R.unhealthy[0] && st)
					snprintf(d, sizeof d, "failed %.1f s "
						 "into its grace period: %s",
						 secs, rwhy);
				tlcm_warn(WHO, "graph %.12s… rolled back (%s): "
					  "starting %s again", R.trial_etag, d,
					  R.good);
				outcome(&R, R.trial_etag, "rolled_back", d);
				unlink(R.trying);
				tlcm_graph_free(g);
				g = NULL;
				if (R.user_stop)
					break;
				continue;
			}
			if (R.user_stop) {
				tlcm_warn(WHO, "graph %.12s… stopped during its "
					  "grace period: rolled back",
					  R.trial_etag);
				outcome(&R, R.trial_etag, "rolled_back",
					"stopped by a signal during its grace "
					"period");
				unlink(R.trying);
				break;
			}
			if (!R.next) { /* it ended well before the period */
				char how[100];
				snprintf(how, sizeof how, "ended without an "
					 "error after %.1f s", secs);
				commit(&R, how);
				break;
			}
		}
		if (R.next && !R.user_stop) {
			if (st)
				tlcm_warn(name, "stopped for the swap with an "
					  "error: %s", rwhy);
			tlcm_info(name, "stopped; swapping in graph %.12s…",
				  R.next_etag);
			tlcm_graph_free(g);
			g = NULL;
			R.trial = true;
			R.committed = false;
			R.unhealthy[0] = 0;
			memcpy(R.trial_etag, R.next_etag, sizeof R.trial_etag);
			continue;
		}
		if (R.next) { /* a signal came with the swap: not tried */
			outcome(&R, R.next_etag, "rolled_back", "stopped by a "
				"signal before it ran");
			unlink(R.trying);
			tlcm_graph_free(R.next);
			R.next = NULL;
		}
		if (st) {
			fprintf(stderr, "tinylcm: graph '%s' failed: %s\n", name,
				rwhy);
			rc = 1;
		} else {
			tlcm_info(name, "finished in %.3f s", secs);
		}
		break;
	}
	tlcm_graph_free(g);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	return rc;
}
