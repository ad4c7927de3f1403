/* ledger.c — node `link.ledger`: a durable, de-duplicating consumer of
 * link.rx's RemoteMsg envelopes (tests, audits).
 *
 * Per satellite it keeps the highest (link_seq, index) seen; an envelope
 * at or below it is a replay (link.rx emits undelivered batches again
 * after a crash) and is counted and skipped. A new one is recorded — its
 * Blob seq (or trace id for other types) under e/<sat>/<arrival number>,
 * and the new mark under h/<sat> — in one atomic records write, so after
 * any crash the ledger holds every message once, in arrival order. At
 * end of stream it writes them as JSON to `report`:
 * {"satellites":{"ID":{"count":N,"replays":R,"seqs":[...]}}}.
 * Without `report` the values are only counted in memory (a long-running
 * core, graphs/core.yaml), not kept.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "engine/node.h"
#include "fb/blob_fb.h"
#include "fb/remote_msg_fb.h"
#include "nodes/link/be64.h"
#include "nodes/link/link.h"
#include "nodes/link/wire.h"

typedef struct {
	char id[LINK_ID_MAX + 1];
	uint64_t seq, n, replays;
	uint32_t idx;
	uint64_t *vals;
	size_t cap;
} lsat_t;

typedef struct {
	lsat_t *s;
	size_t n, cap;
	uint64_t bad;
	bool count_only; /* no report: count the values, keep none */
} ledger_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "RMSG", "link.rx's remote output", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"report", TLCM_P_PATH, "", "write what was recorded as JSON here at "
	 "end of stream", 0, 0, NULL, 0},
	{0},
};

static lsat_t *find(ledger_t *l, const char *id, size_t il)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->s[i].id) == il && !memcmp(l->s[i].id, id, il))
			return &l->s[i];
	if (il > LINK_ID_MAX)
		return NULL;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		lsat_t *ns = realloc(l->s, nc * sizeof *ns);
		if (!ns)
			return NULL;
		l->s = ns;
		l->cap = nc;
	}
	lsat_t *s = &l->s[l->n++];
	memset(s, 0, sizeof *s);
	memcpy(s->id, id, il);
	return s;
}

static int add_val(lsat_t *s, uint64_t v, bool count_only)
{
	if (count_only) {
		s->n++;
		return 0;
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		uint64_t *nv = realloc(s->vals, nc * sizeof *nv);
		if (!nv)
			return TLCM_ENOMEM;
		s->vals = nv;
		s->cap = nc;
	}
	s->vals[s->n++] = v;
	return 0;
}

static int load(void *arg, const void *key, size_t klen, const void *val,
		size_t vlen)
{
	ledger_t *l = arg;
	const char *k = key;
	if (k[0] == 'h' && vlen == 20 && klen > 2) {
		lsat_t *s = find(l, k + 2, klen - 2);
		if (!s)
			return TLCM_ENOMEM;
		s->seq = get_be64(val);
		s->idx = (uint32_t)get_be64((const uint8_t *)val + 8);
		return 0;
	}
	if (k[0] == 'e' && vlen == 8 && klen > 11) {
		lsat_t *s = find(l, k + 2, klen - 11);
		return s ? add_val(s, get_be64(val), l->count_only)
			 : TLCM_ENOMEM;
	}
	return TLCM_ECORRUPT;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	ledger_t *l = st;
	l->count_only = !*tlcm_param_str(ctx, "report");
	int rc = tlcm_records_scan(ctx, "h/", load, l);
	if (!rc)
		rc = tlcm_records_scan(ctx, "e/", load, l);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot load the ledger: %s"
			      " (it needs settings.store)", tlcm_strerror(rc));
		return rc;
	}
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	ledger_t *l = st;
	(void)port;
	int rc = tlcm_expect_msg(ctx, m, &l->bad, "in", "RemoteMsg",
				 tlcm_RemoteMsg_IDENTIFIER,
				 tlcm_RemoteMsg_verify_as_root);
	if (rc)
		return rc;
	tlcm_RemoteMsg_table_t r = tlcm_RemoteMsg_as_root(tlcm_msg_data(m));
	const char *id = tlcm_RemoteMsg_satellite(r);
	size_t il = tlcm_RemoteMsg_satellite_len(r);
	if (!link_id_valid(id, il))
		return tlcm_bad_input(ctx, &l->bad, "in: RemoteMsg without a "
				      "valid satellite id");
	lsat_t *s = find(l, id, il);
	if (!s)
		return TLCM_ENOMEM;
	uint64_t seq = tlcm_RemoteMsg_link_seq(r);
	uint32_t idx = tlcm_RemoteMsg_index(r);
	if (seq < s->seq || (seq == s->seq && idx <= s->idx && s->seq)) {
		s->replays++;
		return 0;
	}
	uint64_t v = tlcm_RemoteMsg_trace(r);
	uint32_t type = tlcm_RemoteMsg_type(r);
	const uint8_t *d = tlcm_RemoteMsg_data(r);
	size_t dl = tlcm_RemoteMsg_data_len(r);
	if (!memcmp(&type, tlcm_Blob_IDENTIFIER, 4) && d &&
	    !tlcm_Blob_verify_as_root(d, dl, NULL))
		v = tlcm_Blob_seq(tlcm_Blob_as_root(d));
	uint8_t ek[2 + LINK_ID_MAX + 9], ev[8], hk[2 + LINK_ID_MAX], hv[20];
	memcpy(ek, "e/", 2);
	memcpy(ek + 2, s->id, il);
	ek[2 + il] = '/';
	be64(ek + 3 + il, s->n);
	be64(ev, v);
	memcpy(hk, "h/", 2);
	memcpy(hk + 2, s->id, il);
	be64(hv, seq);
	be64(hv + 8, idx);
	memset(hv + 16, 0, 4);
	tlcm_record_op_t ops[2] = {
		{ek, 3 + il + 8, ev, 8},
		{hk, 2 + il, hv, 20},
	};
	rc = tlcm_records_write(ctx, ops, 2);
	if (rc)
		return rc;
	s->seq = seq;
	s->idx = idx;
	return add_val(s, v, l->count_only);
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	ledger_t *l = st;
	const char *path = tlcm_param_str(ctx, "report");
	if (!*path)
		return 0;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot write %s", tmp);
		return TLCM_EIO;
	}
	fprintf(f, "{\"bad\":%" PRIu64 ",\"satellites\":{", l->bad);
	for (size_t i = 0; i < l->n; i++) {
		lsat_t *s = &l->s[i];
		fprintf(f, "%s\"%s\":{\"count\":%" PRIu64 ",\"replays\":%"
			PRIu64 ",\"seqs\":[", i ? "," : "", s->id, s->n,
			s->replays);
		for (uint64_t j = 0; j < s->n; j++)
			fprintf(f, "%s%" PRIu64, j ? "," : "", s->vals[j]);
		fprintf(f, "]}");
	}
	fprintf(f, "}}\n");
	if (fclose(f) || rename(tmp, path)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot write %s", path);
		return TLCM_EIO;
	}
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	ledger_t *l = st;
	(void)ctx;
	size_t at = 0;
	at += (size_t)snprintf(buf, len, "{\"bad\":%" PRIu64
			       ",\"satellites\":{", l->bad);
	for (size_t i = 0; i < l->n && at + 120 < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s\"%s\":{"
				       "\"count\":%" PRIu64 ",\"replays\":%"
				       PRIu64 "}", i ? "," : "", l->s[i].id,
				       l->s[i].n, l->s[i].replays);
	if (at + 3 < len)
		snprintf(buf + at, len - at, "}}");
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	ledger_t *l = st;
	(void)ctx;
	for (size_t i = 0; i < l->n; i++)
		free(l->s[i].vals);
	free(l->s);
	memset(l, 0, sizeof *l);
}

const tlcm_node_type_t tlcm_node_link_ledger = {
	.name = "link.ledger",
	.doc = "record link.rx's messages durably, once each, per satellite "
	       "(tests, audits)",
	.inputs = inputs,
	.params = params,
	.state_size = sizeof(ledger_t),
	.init = init,
	.process = process,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
