/* node.h — the contract between the engine and a node type.
 *
 * A node type is a constant descriptor (tlcm_node_type_t): a name, a
 * one-line doc, typed input and output ports, typed parameters and a set of
 * callbacks. A graph file instantiates node types as nodes; the engine owns
 * everything around them — threads, rings, sockets, persistence — and node
 * code sees only its context (tlcm_ctx_t) and its own state.
 *
 * Lifecycle
 *   init(ctx, state)           once, before any message; read parameters,
 *                              set a tick period, allocate. state points to
 *                              state_size zeroed bytes owned by the engine.
 *                              When init fails, fini is not called: release
 *                              what init allocated before returning.
 *   process(ctx, state, port, msg)
 *                              for every message on input `port`. msg and
 *                              its payload are valid only during the call.
 *   tick(ctx, state, now_ns)   every tick period (tlcm_set_tick); a source
 *                              with period 0 is called whenever its outputs
 *                              have room.
 *   param_changed(ctx, state, name)
 *                              after a run-time parameter changed (only
 *                              parameters flagged TLCM_PARAM_RUNTIME can).
 *   snapshot(ctx, state, b)    build the node's durable state into b and
 *                              finish it (T_finish); the engine stores it
 *                              as a new version when the graph has a
 *                              store: on request (control port,
 *                              tlcm_snapshot_now) and at shutdown.
 *   restore(ctx, state, data, len)
 *                              at start (and after a restart) with the
 *                              newest intact version; verify it first.
 *   eos(ctx, state)            all inputs ended; flush what is buffered.
 *                              After it returns, the outputs are closed.
 *   describe(ctx, state, buf, len)
 *                              write a JSON object summarising the state
 *                              (introspection's /api/v1/nodes/ID/state).
 *   fini(ctx, state)           once, last; free what init allocated.
 *   Every callback is optional except that a node must have process or
 *   tick to do anything.
 *
 * Threading
 *   Callbacks of one node are never called concurrently, though successive
 *   calls may come from different threads. Nodes share nothing through the
 *   engine except messages; a node must not keep pointers into a message
 *   after process() returns.
 *
 * Errors
 *   Callbacks return 0 or a negative TLCM_E* code. TLCM_ECLOSED from tick
 *   or process means "this node is finished" (a source that produced its
 *   count): the engine closes its outputs and downstream drains. Any other
 *   error is logged with the node id and handled by the node's on_error
 *   policy from the graph file: stop the graph (default), skip the message,
 *   or restart the node (fini + init). TLCM_EBADMSG from process says the
 *   message is bad (wrong type, corrupt, wrong size): it is counted and
 *   skipped whatever the policy, so bad input never stops a graph; log
 *   which message it was (its frame id) before returning it.
 *
 * Every node also has an implicit input port `control` (messages of type
 * "CTRL", schemas/control.fbs): set a run-time parameter, reload, snapshot,
 * roll back. The engine handles it; node code sees param_changed().
 *
 * Example — a node that forwards messages whose payload is small:
 *
 *   static const tlcm_port_desc_t in[] = {{"in", "*", "anything"}, {0}};
 *   static const tlcm_port_desc_t out[] = {{"out", "*", "small ones"}, {0}};
 *   static const tlcm_param_desc_t params[] = {
 *       {"max", TLCM_P_SIZE, "1KiB", "largest payload forwarded", 0, 1e9},
 *       {0}};
 *   static int process(tlcm_ctx_t *ctx, void *st, int port,
 *                      const tlcm_msg_t *m)
 *   {
 *       if (m->size <= tlcm_param_size(ctx, "max"))
 *           return tlcm_emit_msg(ctx, 0, m);
 *       return 0;
 *   }
 *   const tlcm_node_type_t tlcm_node_small = {
 *       .name = "small", .doc = "forward small messages",
 *       .inputs = in, .outputs = out, .params = params,
 *       .process = process};
 */
#ifndef TLCM_NODE_H
#define TLCM_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/fb/fb.h"
#include "engine/ring.h"

typedef struct tlcm_ctx tlcm_ctx_t;

typedef enum {
	TLCM_P_INT,      /* 64-bit integer */
	TLCM_P_FLOAT,    /* double */
	TLCM_P_BOOL,     /* true/false, yes/no, on/off, 1/0 */
	TLCM_P_STRING,
	TLCM_P_ENUM,     /* one of `choices` ("a|b|c") */
	TLCM_P_LIST,     /* YAML list of strings, or "a,b,c" */
	TLCM_P_DURATION, /* "250ms", "1.5s", "2m", "1h", "100us", "10ns" */
	TLCM_P_SIZE,     /* "64KiB", "1MiB", "2GiB", "512", "1kB", "1MB" */
	TLCM_P_PATH,
	TLCM_P_SECRET,   /* a string never printed by logs, check, dot,
			    nodes or introspection */
} tlcm_param_type_t;

#define TLCM_PARAM_RUNTIME 1u /* may change while the graph runs */
/* The default scales with the hardware profile (engine/profile.h) when
 * neither the graph file nor --set gives the parameter: PERIOD (a
 * duration: poll and report intervals) by the profile's period
 * multiplier, BATCH (an int or size: batch sizes) by its batch one,
 * clamped to the parameter's range. */
#define TLCM_PARAM_PERIOD 2u
#define TLCM_PARAM_BATCH 4u

typedef struct tlcm_param_desc {
	const char *name;
	tlcm_param_type_t type;
	const char *def;     /* default, as written in a graph file; NULL:
				required */
	const char *doc;
	double min, max;     /* range for int/float/duration(ns)/size(bytes);
				both 0: unbounded */
	const char *choices; /* enum: "a|b|c" */
	unsigned flags;
} tlcm_param_desc_t;

#define TLCM_PORT_OPTIONAL 1u /* inputs: may stay unconnected */

typedef struct tlcm_port_desc {
	const char *name;
	const char *types; /* accepted/emitted file identifiers, "BLOB|FRAM",
			      or "*" for any */
	const char *doc;
	unsigned flags;
} tlcm_port_desc_t;

typedef struct tlcm_node_type {
	const char *name;
	const char *doc;
	const tlcm_port_desc_t *inputs;  /* arrays end with a {NULL} entry */
	const tlcm_port_desc_t *outputs;
	const tlcm_param_desc_t *params;
	size_t state_size;

	int (*init)(tlcm_ctx_t *ctx, void *state);
	int (*process)(tlcm_ctx_t *ctx, void *state, int port,
		       const tlcm_msg_t *msg);
	int (*tick)(tlcm_ctx_t *ctx, void *state, uint64_t now_ns);
	int (*param_changed)(tlcm_ctx_t *ctx, void *state, const char *name);
	int (*snapshot)(tlcm_ctx_t *ctx, void *state, tlcm_fbb_t *b);
	int (*restore)(tlcm_ctx_t *ctx, void *state, const void *data,
		       size_t len);
	int (*eos)(tlcm_ctx_t *ctx, void *state);
	/* A JSON object summarising the state, for introspection (optional;
	 * called like any callback, never concurrently with the others). */
	int (*describe)(tlcm_ctx_t *ctx, void *state, char *buf, size_t len);
	void (*fini)(tlcm_ctx_t *ctx, void *state);
} tlcm_node_type_t;

/* ---- what node code may call, from its callbacks ------------------------ */

const char *tlcm_node_id(const tlcm_ctx_t *ctx);

/* Parameter values (already validated against the descriptor). Asking for
 * a name the descriptor lacks, or with the wrong type, is a bug: logged,
 * and 0/NULL returned. */
int64_t tlcm_param_int(const tlcm_ctx_t *ctx, const char *name);
double tlcm_param_float(const tlcm_ctx_t *ctx, const char *name);
bool tlcm_param_bool(const tlcm_ctx_t *ctx, const char *name);
const char *tlcm_param_str(const tlcm_ctx_t *ctx, const char *name);
uint64_t tlcm_param_duration_ns(const tlcm_ctx_t *ctx, const char *name);
uint64_t tlcm_param_size(const tlcm_ctx_t *ctx, const char *name);
size_t tlcm_param_list(const tlcm_ctx_t *ctx, const char *name,
		       const char *const **items);

/* Emit on output port `port` (index into the descriptor's outputs). The
 * message goes to every edge connected to the port; a port with no edge
 * discards it. The trace id is the one of the message being processed, or
 * what tlcm_set_trace() set. Returns 0, or TLCM_EAGAIN when every edge
 * dropped it (counted), or another error. */
int tlcm_emit(tlcm_ctx_t *ctx, int port, const char type[4], const void *data,
	      size_t size);
/* Forward a received message unchanged (type, payload, trace). */
int tlcm_emit_msg(tlcm_ctx_t *ctx, int port, const tlcm_msg_t *msg);
/* Build a FlatBuffer directly in ring memory: begin gives b a fixed buffer
 * of up to max bytes inside the first edge's ring; end finishes it with
 * root and identifier and commits (copying into the port's other edges). */
int tlcm_emit_begin(tlcm_ctx_t *ctx, int port, tlcm_fbb_t *b, size_t max);
int tlcm_emit_end(tlcm_ctx_t *ctx, int port, tlcm_fbb_t *b,
		  tlcm_fbb_ref_t root, const char identifier[4]);
/* tlcm_emit_end that first verifies the finished message with verify (the
 * schema's generated *_verify_as_root): one verification for all of the
 * port's edges, whose copies are marked verified, so that consumers in
 * this process skip theirs (tlcm_msg_verified, tlcm_expect_msg). Worth it
 * on a port with several edges. A message that fails is not sent: the
 * reason is logged and TLCM_EINVAL returned (a bug of the node). */
int tlcm_emit_end_checked(tlcm_ctx_t *ctx, int port, tlcm_fbb_t *b,
			  tlcm_fbb_ref_t root, const char identifier[4],
			  int (*verify)(const void *, size_t, const char **));

void tlcm_set_trace(tlcm_ctx_t *ctx, uint64_t trace);
uint64_t tlcm_trace(const tlcm_ctx_t *ctx);

/* Call tick every period_ns; 0 = whenever the outputs have room (sources
 * running flat out); TLCM_TICK_OFF (default) = never. */
#define TLCM_TICK_OFF UINT64_MAX
void tlcm_set_tick(tlcm_ctx_t *ctx, uint64_t period_ns);

/* Store a snapshot of this node now (needs a graph store and a snapshot
 * callback: TLCM_ENOTSUP otherwise). */
int tlcm_snapshot_now(tlcm_ctx_t *ctx, const char *reason);

/* The graph's store, for engine services that live in it (the outbox:
 * engine/outbox.h). NULL without settings.store and in an isolated
 * node's process. Node state belongs in snapshots and records. */
struct tlcm_store;
struct tlcm_store *tlcm_graph_store(tlcm_ctx_t *ctx);

/* Records: durable key/value pairs of this node in the graph store, next
 * to its snapshots, for state that changes a little at a time (a queue:
 * one record per entry) where a whole snapshot per change would cost
 * O(state). tlcm_records_write() applies ops in one atomic batch (val
 * NULL: delete key), synced per the graph's `sync` setting;
 * tlcm_records_scan() calls fn for every record whose key starts with
 * prefix, in key order, the value 8-byte aligned (fn's non-zero return
 * stops the scan and is returned).
 * Keys up to 200 bytes. TLCM_ENOTSUP without a graph store or in an
 * isolated node's process: keep using snapshots there. Records are not
 * versioned, not part of group snapshots or rollbacks, and survive
 * restarts until deleted (settings.fresh_store clears them). */
typedef struct tlcm_record_op {
	const void *key;
	size_t klen;
	const void *val; /* NULL: delete */
	size_t vlen;
} tlcm_record_op_t;
int tlcm_records_write(tlcm_ctx_t *ctx, const tlcm_record_op_t *ops,
		       size_t n);
int tlcm_records_scan(tlcm_ctx_t *ctx, const char *prefix,
		      int (*fn)(void *arg, const void *key, size_t klen,
				const void *val, size_t vlen),
		      void *arg);

/* Group snapshots across two nodes, for a node that changes another one's
 * state through messages and must be able to undo it (nodes/adapt: the
 * adapter and the knn it teaches).
 *
 * tlcm_snapshot_group() snapshots this node and node `other` (an id in
 * the graph) now, as one group written in one atomic batch (store.h);
 * *version and *other_version (either may be NULL) receive the two new
 * versions. The calling thread takes `other` like a worker would, only
 * while it is idle or queued, and calls its snapshot callback itself: so
 * the state is exactly the one before any message this node emits after
 * the call. Never waits: TLCM_EAGAIN when `other` is running right now
 * (try again from a later callback).
 *
 * tlcm_rollback_group() rolls back the group snapshot that holds this
 * node's `version`: every other member is restored in memory to its
 * version of the group (its restore callback, called by this thread while
 * the member is idle), then the store makes the group's versions the
 * newest again (tlcm_store_rollback: "rollback to vN" for every member).
 * This node's own state is NOT restored (it is running the call): the
 * caller reverts what it needs and may snapshot itself afterwards.
 * TLCM_EAGAIN, with nothing changed, when a member is running or has not
 * yet taken every message this node sent it (so nothing sent before the
 * rollback can land after it).
 *
 * Both need a graph store, snapshot and restore callbacks on both sides,
 * and nodes that are not `isolate: process` (TLCM_ENOTSUP otherwise);
 * TLCM_ENOENT for an unknown id, TLCM_ECLOSED when `other` has finished,
 * TLCM_EINVAL for a version that is not a group snapshot. */
int tlcm_snapshot_group(tlcm_ctx_t *ctx, const char *other,
			const char *reason, uint64_t *version,
			uint64_t *other_version);
int tlcm_rollback_group(tlcm_ctx_t *ctx, uint64_t version);

/* A 64-bit id unique on this device across restarts, never 0 (frame ids,
 * package ids). With a graph store, ids come from blocks reserved durably
 * in the store (a crash skips some, never repeats one); without a store,
 * or in an isolated node's process, from the wall clock (microseconds
 * << 12, increasing within the process): unique unless the clock goes
 * back. */
uint64_t tlcm_unique_id(tlcm_ctx_t *ctx);

/* True once the graph is shutting down: sources should finish. */
bool tlcm_stopping(const tlcm_ctx_t *ctx);

/* True when every other node is idle (not running, not queued) and no
 * edge holds an unread message, except the edges into the calling node
 * (e.g. feedback edges back to it): everything the caller emitted so far
 * has been processed through the graph. Nodes with timers may still emit
 * later, and a free-running source elsewhere keeps the answer false. For
 * sources that play a test or evaluation in phases (emit, wait until
 * idle, go on); call from tick() and, while false, return 0 to be called
 * again (a paced tick, or tlcm_set_tick(ctx, 0) with a short sleep).
 * Finished nodes count as idle; `isolate: process` nodes are judged by
 * their edges alone. Called in an isolated node's own process, where the
 * rest of the graph is not visible, it is always false. Never waits. */
bool tlcm_graph_idle(tlcm_ctx_t *ctx);

/* True when no input edge of the calling node holds an unread message.
 * A tick cannot drain its own inputs (the engine hands them to process()
 * after the tick returns), so a source waiting for the answers to what it
 * played checks tlcm_graph_idle() and then this, on a later tick. */
bool tlcm_inputs_empty(tlcm_ctx_t *ctx);

/* Report a bad input message (wrong type, corrupt, does not fit): adds
 * one to *count (the node's own tally, e.g. for describe and snapshots),
 * logs "MESSAGE (N bad so far)" for the first five and then one in 1000,
 * so a wrong edge cannot flood the log, and returns TLCM_EBADMSG for
 * process() to return (the engine skips the message). */
int tlcm_bad_input(tlcm_ctx_t *ctx, uint64_t *count, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Check that m is a `name` message (identifier ident) that verify()
 * accepts, for input `port`: 0, or TLCM_EBADMSG reported through
 * tlcm_bad_input ("in: expected a Prediction (PRED), got a 'BLOB'
 * message", "in: invalid Prediction: WHY"). verify is the schema's
 * generated *_verify_as_root. */
int tlcm_expect_msg(tlcm_ctx_t *ctx, const tlcm_msg_t *m, uint64_t *bad,
		    const char *port, const char *name, const char ident[4],
		    int (*verify)(const void *, size_t, const char **));

/* True when m, a message of the input being processed, was verified when
 * it was emitted (tlcm_emit_end_checked) by a node of this process. Not
 * for an isolated producer (its own process writes the ring: nothing in
 * it is taken on trust) nor inside an isolated node. tlcm_expect_msg
 * then skips the verification; a node verifying by hand may too. */
bool tlcm_msg_verified(const tlcm_ctx_t *ctx, const tlcm_msg_t *m);

/* The message's type as a printable C string (non-printable bytes as
 * '?'), for error messages. */
void tlcm_msg_type_str(const tlcm_msg_t *m, char out[5]);

/* Append s to buf[*at..end) as a quoted, escaped JSON string (for
 * describe()); false, with *at unchanged, when it does not fit. */
bool tlcm_json_str(char *buf, size_t *at, size_t end, const char *s);
/* Append one `"key":count` member of a JSON object to buf[*at..end),
 * preceded by ',' unless first; false, with *at unchanged, when it does
 * not fit (describe() then marks the list truncated). */
bool tlcm_json_count(char *buf, size_t *at, size_t end, bool first,
		     const char *key, size_t count);

/* Live figures of the running graph, read-only, for nodes that report
 * on the engine (nodes/telemetry: `metrics`) — the same figures as
 * introspection's /api/v1/stats. tlcm_graph_nodes() fills out[0..max)
 * (node order of the graph) and returns how many nodes there are;
 * tlcm_graph_edges() likewise for the edges. Strings point into the
 * graph and stay valid for the run. Counters are read relaxed while
 * other nodes run: each is exact, a set of them is not one instant.
 * In an isolated node's process the rest of the graph is not visible:
 * both return 0. */
typedef struct tlcm_node_figures {
	const char *id, *type;
	const char *state; /* "running", "finished", "failed" */
	uint64_t in, out, dropped, errors, restarts, batches;
	uint64_t busy_ns;  /* in process() and tick() */
} tlcm_node_figures_t;
typedef struct tlcm_edge_figures {
	const char *from, *from_port, *to, *to_port;
	uint64_t used, capacity; /* bytes */
	uint64_t messages, bytes; /* committed so far */
	uint64_t dropped, full;   /* dropped messages; times found full */
	bool feedback;            /* a back edge (`feedback: true`) */
} tlcm_edge_figures_t;
size_t tlcm_graph_nodes(tlcm_ctx_t *ctx, tlcm_node_figures_t *out,
			size_t max);
size_t tlcm_graph_edges(tlcm_ctx_t *ctx, tlcm_edge_figures_t *out,
			size_t max);
/* The graph's name (for reports). */
const char *tlcm_graph_name(const tlcm_ctx_t *ctx);
/* The hardware profile the graph runs with: "LOW_POWER", "BALANCED" or
 * "HIGH_PERFORMANCE" (engine/profile.h; "BALANCED" when none was
 * selected), e.g. for a hello to a core. */
const char *tlcm_profile(const tlcm_ctx_t *ctx);

/* Log with the node id. */
void tlcm_node_log(const tlcm_ctx_t *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Monotonic clock, ns (the clock of tlcm_msg_t.ts_ns). */
uint64_t tlcm_now_ns(void);

#endif
