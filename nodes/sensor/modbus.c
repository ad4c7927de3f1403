/* modbus.c — node `sensor.modbus`: polls registers of a Modbus TCP device
 * (libmodbus) every `interval` and emits the scaled values as one Metrics
 * whose keys are the registers' tags (a BMS, a PLC, a heat pump).
 *
 * Each item of `registers` describes one read as space-separated
 * key=value pairs:
 *   tag=battery.voltage kind=holding address=100 type=u16 scale=0.01
 *   offset=0 words=big count=1
 * kind: holding, input, coil, discrete; type (registers): u16, i16, u32,
 * i32, f32 (two registers; words=big: the first register holds the high
 * word, little: the low word); value = raw * scale + offset. count > 1
 * reads that many consecutive values as TAG.0, TAG.1, ... A read the
 * device refuses (a Modbus exception) or that fails is counted per
 * register and logged with the register named; the others still report.
 * A lost connection is retried with exponential backoff (backoff_min,
 * doubling to backoff_max); meanwhile no reports are sent. Calls block up
 * to `timeout`: give the node `thread: own` when that matters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <modbus/modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "nodes/sensor/sensor.h"

enum { K_HOLDING, K_INPUT, K_COIL, K_DISCRETE };
enum { T_U16, T_I16, T_U32, T_I32, T_F32 };
static const char *const kinds[] = {"holding", "input", "coil", "discrete"};
static const char *const typenames[] = {"u16", "i16", "u32", "i32", "f32"};

typedef struct {
	char tag[128];
	int kind, type, address, count;
	bool little; /* words=little */
	double scale, offset;
	uint64_t errors;
} reg_t;

typedef struct {
	reg_t *regs;
	size_t nregs;
	char host[256];
	int port, unit;
	modbus_t *mb;
	bool connected, ever_connected;
	uint64_t interval_ns, next_ns, timeout_ns;
	uint64_t backoff_min, backoff_max, backoff, retry_ns;
	uint64_t count, sent, errors, reconnects;
} mbnode_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "TMET", "the registers' values as one Metrics per interval",
	 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"host", TLCM_P_STRING, NULL, "the device's address", 0, 0, NULL, 0},
	{"port", TLCM_P_INT, "502", "its Modbus TCP port", 1, 65535, NULL, 0},
	{"unit", TLCM_P_INT, "1", "unit (slave) id", 0, 255, NULL, 0},
	{"registers", TLCM_P_LIST, NULL, "one item per read: \"tag=T kind="
	 "holding|input|coil|discrete address=N [type=u16|i16|u32|i32|f32] "
	 "[scale=1] [offset=0] [words=big|little] [count=1]\"", 0, 0, NULL,
	 0},
	{"interval", TLCM_P_DURATION, "1s", "time between polls (scaled by "
	 "the hardware profile)", 1000000, 86400e9, NULL, TLCM_PARAM_PERIOD},
	{"timeout", TLCM_P_DURATION, "1s", "longest wait for an answer",
	 1000000, 60e9, NULL, 0},
	{"backoff_min", TLCM_P_DURATION, "100ms", "first wait before "
	 "reconnecting", 1000000, 3600e9, NULL, 0},
	{"backoff_max", TLCM_P_DURATION, "30s", "longest wait before "
	 "reconnecting", 1000000, 3600e9, NULL, 0},
	{"count", TLCM_P_INT, "0", "end after this many reports (0: until "
	 "the graph stops)", 0, 0, NULL, 0},
	{0},
};

static int find_word(const char *w, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(w, list[i]))
			return i;
	return -1;
}

/* Parse one `registers` item into r; on error say why. */
static int parse_reg(const char *spec, reg_t *r, char *why, size_t n)
{
	memset(r, 0, sizeof *r);
	r->kind = -1;
	r->address = -1;
	r->count = 1;
	r->scale = 1;
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return TLCM_ENOMEM;
	int rc = 0;
	for (char *kv = strtok_r(copy, " \t", &save); kv && !rc;
	     kv = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(kv, '='), *end;
		if (!eq) {
			rc = tlcm_fail(why, n, TLCM_EINVAL, "'%s' is not "
				       "key=value", kv);
			break;
		}
		*eq = 0;
		const char *k = kv, *v = eq + 1;
		if (!strcmp(k, "tag")) {
			if (!*v || strlen(v) >= sizeof r->tag)
				rc = tlcm_fail(why, n, TLCM_EINVAL, "tag: 1 to "
					       "%zu bytes", sizeof r->tag - 1);
			else
				tlcm_sensor_key(r->tag, sizeof r->tag, v);
		} else if (!strcmp(k, "kind")) {
			if ((r->kind = find_word(v, kinds, 4)) < 0)
				rc = tlcm_fail(why, n, TLCM_EINVAL, "kind: '%s' "
					       "is not holding, input, coil or "
					       "discrete", v);
		} else if (!strcmp(k, "type")) {
			if ((r->type = find_word(v, typenames, 5)) < 0)
				rc = tlcm_fail(why, n, TLCM_EINVAL, "type: '%s' "
					       "is not u16, i16, u32, i32 or "
					       "f32", v);
		} else if (!strcmp(k, "words")) {
			if (strcmp(v, "big") && strcmp(v, "little"))
				rc = tlcm_fail(why, n, TLCM_EINVAL, "words: "
					       "'%s' is not big or little", v);
			r->little = !strcmp(v, "little");
		} else if (!strcmp(k, "address") || !strcmp(k, "count")) {
			long x = strtol(v, &end, 0);
			bool addr = !strcmp(k, "address");
			if (end == v || *end || x < (addr ? 0 : 1) ||
			    x > (addr ? 65535 : 125))
				rc = tlcm_fail(why, n, TLCM_EINVAL, "%s: '%s' is "
					       "not %s", k, v, addr ? "0..65535"
					       : "1..125");
			else if (addr)
				r->address = (int)x;
			else
				r->count = (int)x;
		} else if (!strcmp(k, "scale") || !strcmp(k, "offset")) {
			double x = strtod(v, &end);
			if (end == v || *end)
				rc = tlcm_fail(why, n, TLCM_EINVAL, "%s: '%s' is "
					       "not a number", k, v);
			else if (!strcmp(k, "scale"))
				r->scale = x;
			else
				r->offset = x;
		} else {
			rc = tlcm_fail(why, n, TLCM_EINVAL, "unknown key '%s' "
				       "(tag, kind, address, type, scale, "
				       "offset, words, count)", k);
		}
	}
	free(copy);
	if (!rc && (!r->tag[0] || r->kind < 0 || r->address < 0))
		rc = tlcm_fail(why, n, TLCM_EINVAL, "needs tag, kind and "
			       "address");
	int words = r->type >= T_U32 ? 2 : 1;
	if (!rc && r->kind <= K_INPUT && r->address + r->count * words > 65536)
		rc = tlcm_fail(why, n, TLCM_EINVAL, "address + count runs past "
			       "register 65535");
	return rc;
}

static double decode(const reg_t *r, const uint16_t *w)
{
	uint32_t u32 = r->little ? ((uint32_t)w[1] << 16 | w[0])
				 : ((uint32_t)w[0] << 16 | w[1]);
	double raw;
	switch (r->type) {
	case T_I16:
		raw = (int16_t)w[0];
		break;
	case T_U32:
		raw = u32;
		break;
	case T_I32:
		raw = (int32_t)u32;
		break;
	case T_F32: {
		float f;
		memcpy(&f, &u32, sizeof f);
		raw = f;
		break;
	}
	default:
		raw = w[0];
	}
	return raw * r->scale + r->offset;
}

static void disconnect(mbnode_t *m)
{
	if (m->mb) {
		modbus_close(m->mb);
		modbus_free(m->mb);
		m->mb = NULL;
	}
	m->connected = false;
}

/* Connect now if the backoff allows; true when connected. */
static bool ensure_connected(tlcm_ctx_t *ctx, mbnode_t *m, uint64_t now)
{
	if (m->connected)
		return true;
	if (now < m->retry_ns)
		return false;
	m->mb = modbus_new_tcp(m->host, m->port);
	if (!m->mb) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s:%d: %s", m->host, m->port,
			      modbus_strerror(errno));
		return false;
	}
	modbus_set_slave(m->mb, m->unit);
	modbus_set_response_timeout(m->mb, (uint32_t)(m->timeout_ns /
						      1000000000u),
				    (uint32_t)(m->timeout_ns % 1000000000u /
					       1000u));
	if (modbus_connect(m->mb) != 0) {
		int e = errno;
		if (m->backoff == m->backoff_min || m->backoff >= m->backoff_max)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot connect to "
				      "%s:%d: %s (retrying, waits from %.3g s "
				      "up to %.3g s)", m->host, m->port,
				      modbus_strerror(e),
				      (double)m->backoff / 1e9,
				      (double)m->backoff_max / 1e9);
		modbus_free(m->mb);
		m->mb = NULL;
		m->retry_ns = now + m->backoff;
		m->backoff = m->backoff * 2 < m->backoff_max ? m->backoff * 2
							     : m->backoff_max;
		return false;
	}
	if (m->ever_connected) {
		m->reconnects++;
		tlcm_node_log(ctx, TLCM_LOG_INFO, "reconnected to %s:%d",
			      m->host, m->port);
	}
	m->ever_connected = true;
	m->connected = true;
	m->backoff = m->backoff_min;
	return true;
}

/* A failure that leaves the connection unusable (not an exception). */
static bool connection_lost(int e)
{
	return !(e > MODBUS_ENOBASE && e < MODBUS_ENOBASE + 64);
}

static int poll_once(tlcm_ctx_t *ctx, mbnode_t *m)
{
	tlcm_sensor_msg_t *msg = tlcm_sensor_msg_new();
	if (!msg)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < m->nregs && m->connected; i++) {
		reg_t *r = &m->regs[i];
		int words = r->kind <= K_INPUT && r->type >= T_U32 ? 2 : 1;
		int nb = r->count * words, got;
		uint16_t w[250];
		uint8_t bits[125];
		switch (r->kind) {
		case K_HOLDING:
			got = modbus_read_registers(m->mb, r->address, nb, w);
			break;
		case K_INPUT:
			got = modbus_read_input_registers(m->mb, r->address,
							  nb, w);
			break;
		case K_COIL:
			got = modbus_read_bits(m->mb, r->address, nb, bits);
			break;
		default:
			got = modbus_read_input_bits(m->mb, r->address, nb,
						     bits);
		}
		if (got != nb) {
			int e = got < 0 ? errno : EMBBADDATA;
			r->errors++;
			m->errors++;
			if (r->errors <= 5 || r->errors % 1000 == 0)
				tlcm_node_log(ctx, TLCM_LOG_WARN, "register %s "
					      "(%s %d, %d %s): %s (%llu errors "
					      "on it so far)", r->tag,
					      kinds[r->kind], r->address, nb,
					      r->kind <= K_INPUT ? "registers"
								 : "bits",
					      modbus_strerror(e),
					      (unsigned long long)r->errors);
			if (got < 0 && connection_lost(e)) {
				tlcm_node_log(ctx, TLCM_LOG_WARN, "lost %s:%d; "
					      "reconnecting", m->host, m->port);
				disconnect(m);
			}
			continue;
		}
		for (int k = 0; k < r->count; k++) {
			char key[160];
			if (r->count == 1)
				snprintf(key, sizeof key, "%s", r->tag);
			else
				snprintf(key, sizeof key, "%s.%d", r->tag, k);
			double v = r->kind <= K_INPUT
					   ? decode(r, w + k * words)
					   : bits[k] * r->scale + r->offset;
			tlcm_sensor_put(msg, key, v);
		}
	}
	if (!m->connected) { /* lost during the poll: no partial report */
		tlcm_sensor_msg_free(msg);
		return 0;
	}
	tlcm_sensor_put(msg, "modbus.errors", (double)m->errors);
	tlcm_sensor_put(msg, "modbus.reconnects", (double)m->reconnects);
	int rc = tlcm_sensor_emit(ctx, msg, ++m->sent);
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot send readings: %s",
			      tlcm_strerror(rc));
	return rc;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	mbnode_t *m = st;
	(void)ctx;
	disconnect(m);
	free(m->regs);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	mbnode_t *m = st;
	const char *host = tlcm_param_str(ctx, "host");
	if (!*host || strlen(host) >= sizeof m->host) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "host: empty or too long");
		return TLCM_EINVAL;
	}
	snprintf(m->host, sizeof m->host, "%s", host);
	m->port = (int)tlcm_param_int(ctx, "port");
	m->unit = (int)tlcm_param_int(ctx, "unit");
	m->interval_ns = tlcm_param_duration_ns(ctx, "interval");
	m->timeout_ns = tlcm_param_duration_ns(ctx, "timeout");
	m->backoff_min = tlcm_param_duration_ns(ctx, "backoff_min");
	m->backoff_max = tlcm_param_duration_ns(ctx, "backoff_max");
	if (m->backoff_max < m->backoff_min)
		m->backoff_max = m->backoff_min;
	m->backoff = m->backoff_min;
	m->count = (uint64_t)tlcm_param_int(ctx, "count");
	const char *const *items;
	size_t n = tlcm_param_list(ctx, "registers", &items);
	if (!n) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "registers: none given");
		return TLCM_EINVAL;
	}
	m->regs = calloc(n, sizeof *m->regs);
	if (!m->regs)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char why[300];
		int rc = parse_reg(items[i], &m->regs[i], why, sizeof why);
		if (rc) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "registers[%zu] "
				      "'%s': %s", i, items[i], why);
			free(m->regs);
			m->regs = NULL;
			return rc;
		}
	}
	m->nregs = n;
	m->next_ns = tlcm_now_ns();
	uint64_t t = m->interval_ns < 50000000u ? m->interval_ns : 50000000u;
	tlcm_set_tick(ctx, t);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	mbnode_t *m = st;
	if (tlcm_stopping(ctx))
		return TLCM_ECLOSED;
	if (now < m->next_ns || !ensure_connected(ctx, m, now))
		return 0;
	m->next_ns = now + m->interval_ns;
	int rc = poll_once(ctx, m);
	if (rc && rc != TLCM_ENOMEM)
		return rc;
	return m->count && m->sent >= m->count ? TLCM_ECLOSED : 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	mbnode_t *m = st;
	(void)ctx;
	int w = snprintf(buf, len, "{\"connected\":%s,\"reports\":%llu,"
			 "\"errors\":%llu,\"reconnects\":%llu}",
			 m->connected ? "true" : "false",
			 (unsigned long long)m->sent,
			 (unsigned long long)m->errors,
			 (unsigned long long)m->reconnects);
	return w < 0 || (size_t)w >= len ? TLCM_ENOSPC : 0;
}

const tlcm_node_type_t tlcm_node_sensor_modbus = {
	.name = "sensor.modbus",
	.doc = "Modbus TCP registers, scaled and tagged, as Metrics every "
	       "interval",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(mbnode_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
