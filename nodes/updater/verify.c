/* verify.c — signed model updates: the message, trusted keys, the checks
 * of an offer, SHA-256 of files (libsodium). See verify.h.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/error.h"
#include "nodes/updater/verify.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;

static void sodium_once(void)
{
	init_rc = sodium_init() < 0 ? TLCM_EINTERNAL : 0;
}

int upd_crypto_init(void)
{
	pthread_once(&once, sodium_once);
	return init_rc;
}

static bool valid_word(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n < 1 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

bool upd_valid_name(const char *s)
{
	return valid_word(s, UPD_NAME_MAX);
}

bool upd_valid_key_id(const char *s)
{
	return valid_word(s, UPD_KEY_ID_MAX);
}

static bool valid_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!isdigit((unsigned char)s[i]) &&
		    !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

size_t upd_message(const upd_meta_t *m, char *out, size_t cap)
{
	if (!upd_valid_name(m->name) || !valid_hex64(m->sha256))
		return 0;
	int n = snprintf(out, cap, "tinylcm-model/1\n%s\n%" PRIu64 "\n%s\n%"
			 PRId64 "\n%" PRId64 "\n", m->name, m->version,
			 m->sha256, m->created_s, m->expires_s);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* ---- base64 -------------------------------------------------------------- */

bool upd_b64_decode(const char *s, uint8_t *out, size_t want)
{
	size_t n = 0;
	const char *end;
	if (sodium_base642bin(out, want, s, strlen(s), " \n\r\t", &n, &end,
			      sodium_base64_VARIANT_ORIGINAL))
		return false;
	return n == want && !*end;
}

void upd_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	size_t need = sodium_base64_ENCODED_LEN(n,
						sodium_base64_VARIANT_ORIGINAL);
	if (cap < need) {
		if (cap)
			out[0] = 0;
		return;
	}
	sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
}

/* ---- keys ---------------------------------------------------------------- */

static int keys_put(upd_keys_t *ks, const char *id, const uint8_t *pk)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->k[i].id, id)) {
			memcpy(ks->k[i].pk, pk, UPD_PK_BYTES);
			return 0;
		}
	if (ks->n == ks->cap) {
		size_t c = ks->cap ? ks->cap * 2 : 4;
		upd_key_t *k = realloc(ks->k, c * sizeof *k);
		if (!k)
			return TLCM_ENOMEM;
		ks->k = k;
		ks->cap = c;
	}
	upd_key_t *k = &ks->k[ks->n++];
	snprintf(k->id, sizeof k->id, "%s", id);
	memcpy(k->pk, pk, UPD_PK_BYTES);
	return 0;
}

/* One "ID" + "BASE64" pair; where names the origin for messages. */
static int key_pair(upd_keys_t *ks, const char *id, const char *b64,
		    const char *where, char *why, size_t cap)
{
	uint8_t pk[UPD_SK_BYTES];
	if (!upd_valid_key_id(id))
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: key id '%s': want "
				 "[A-Za-z0-9._-]{1,%d}", where, id,
				 UPD_KEY_ID_MAX);
	if (upd_b64_decode(b64, pk, UPD_SK_BYTES))
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: key '%s' is a "
				 "secret (signing) key: a device needs only "
				 "the public key (the .pub file)", where, id);
	if (!upd_b64_decode(b64, pk, UPD_PK_BYTES))
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: key '%s': want "
				 "the base64 of a %d-byte Ed25519 public key",
				 where, id, UPD_PK_BYTES);
	return keys_put(ks, id, pk);
}

int upd_keys_add_item(upd_keys_t *ks, const char *item, char *why,
		      size_t cap)
{
	const char *colon = strchr(item, ':');
	char id[UPD_KEY_ID_MAX + 2];
	if (!colon || (size_t)(colon - item) > UPD_KEY_ID_MAX)
		return tlcm_fail(why, cap, TLCM_EINVAL, "keys: want "
				 "KEY_ID:BASE64 items, got '%.80s'", item);
	snprintf(id, sizeof id, "%.*s", (int)(colon - item), item);
	return key_pair(ks, id, colon + 1, "keys", why, cap);
}

int upd_keys_load(upd_keys_t *ks, const char *path, char *why, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "%s: %s", path, strerror(errno));
	char line[512];
	int rc = 0, no = 0;
	while (!rc && fgets(line, sizeof line, f)) {
		no++;
		char *h = strchr(line, '#');
		if (h)
			*h = 0;
		char id[128], b64[256], extra[8];
		int n = sscanf(line, "%127s %255s %7s", id, b64, extra);
		if (n <= 0)
			continue;
		char where[300];
		snprintf(where, sizeof where, "%s:%d", path, no);
		if (n != 2)
			rc = tlcm_fail(why, cap, TLCM_EINVAL, "%s: want "
				       "\"KEY_ID BASE64\"", where);
		else
			rc = key_pair(ks, id, b64, where, why, cap);
	}
	fclose(f);
	return rc;
}

const upd_key_t *upd_keys_find(const upd_keys_t *ks, const char *id)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->k[i].id, id))
			return &ks->k[i];
	return NULL;
}

void upd_keys_free(upd_keys_t *ks)
{
	free(ks->k);
	memset(ks, 0, sizeof *ks);
}

/* ---- offers -------------------------------------------------------------- */

/* A JSON integer in [lo, hi] (exact: below 2^53). */
static bool json_int(const cJSON *o, const char *key, double lo, double hi,
		     double *v)
{
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(i))
		return false;
	double d = i->valuedouble;
	if (!(d >= lo && d <= hi) || d != floor(d) ||
	    fabs(d) >= 9007199254740992.0)
		return false;
	*v = d;
	return true;
}

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(i) ? i->valuestring : NULL;
}

int upd_meta_from_json(const void *json, upd_meta_t *m, const char **code,
		       char *why, size_t cap)
{
	const cJSON *o = json;
	memset(m, 0, sizeof *m);
	*code = "bad_metadata";
	if (!cJSON_IsObject(o))
		return tlcm_fail(why, cap, TLCM_EPROTO, "an update is not a "
				 "JSON object");
	const char *name = json_str(o, "name");
	if (!name || !upd_valid_name(name))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update name: want "
				 "[A-Za-z0-9._-]{1,%d}, got %s%.80s%s",
				 UPD_NAME_MAX, name ? "'" : "",
				 name ? name : "none", name ? "'" : "");
	snprintf(m->name, sizeof m->name, "%s", name);
	double v;
	if (!json_int(o, "version", 1, 9007199254740991.0, &v))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s: version: "
				 "want a whole number >= 1", name);
	m->version = (uint64_t)v;
	const char *sha = json_str(o, "sha256");
	if (!sha || !valid_hex64(sha))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s@%" PRIu64
				 ": sha256: want 64 lower-case hex digits",
				 name, m->version);
	memcpy(m->sha256, sha, 65);
	if (!json_int(o, "size", 0, 9007199254740991.0, &v))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s@%" PRIu64
				 ": size: want a whole number of bytes", name,
				 m->version);
	m->size = (uint64_t)v;
	if (!json_int(o, "created_s", 0, 9007199254740991.0, &v))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s@%" PRIu64
				 ": created_s: want seconds since the epoch",
				 name, m->version);
	m->created_s = (int64_t)v;
	if (!json_int(o, "expires_s", 0, 9007199254740991.0, &v))
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s@%" PRIu64
				 ": expires_s: want seconds since the epoch",
				 name, m->version);
	m->expires_s = (int64_t)v;
	const char *url = json_str(o, "url");
	if (url && strlen(url) >= sizeof m->url)
		return tlcm_fail(why, cap, TLCM_EPROTO, "update %s@%" PRIu64
				 ": url longer than %zu", name, m->version,
				 sizeof m->url - 1);
	snprintf(m->url, sizeof m->url, "%s", url ? url : "");
	/* the signature: absent is "unsigned" (upd_check), present but not
	 * 64 bytes of base64 a bad signature */
	const char *kid = json_str(o, "key_id");
	const char *sig = json_str(o, "signature");
	if (kid && *kid)
		snprintf(m->key_id, sizeof m->key_id, "%.*s", UPD_KEY_ID_MAX,
			 kid);
	if (sig && *sig) {
		snprintf(m->sig_b64, sizeof m->sig_b64, "%s", sig);
		m->has_sig = kid && *kid;
		if (!upd_b64_decode(sig, m->sig, UPD_SIG_BYTES))
			memset(m->sig, 0, sizeof m->sig); /* cannot verify */
	}
	*code = "";
	return 0;
}

char *upd_meta_to_json(const upd_meta_t *m)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", m->name);
	cJSON_AddNumberToObject(o, "version", (double)m->version);
	cJSON_AddStringToObject(o, "sha256", m->sha256);
	cJSON_AddNumberToObject(o, "size", (double)m->size);
	cJSON_AddNumberToObject(o, "created_s", (double)m->created_s);
	cJSON_AddNumberToObject(o, "expires_s", (double)m->expires_s);
	if (m->key_id[0])
		cJSON_AddStringToObject(o, "key_id", m->key_id);
	if (m->sig_b64[0])
		cJSON_AddStringToObject(o, "signature", m->sig_b64);
	if (m->url[0])
		cJSON_AddStringToObject(o, "url", m->url);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

int upd_check(const upd_meta_t *m, const upd_keys_t *ks, uint64_t running,
	      int64_t now_s, const char **code, char *why, size_t cap)
{
	if (upd_crypto_init())
		return tlcm_fail(why, cap, TLCM_EINTERNAL, "libsodium does not "
				 "initialise");
	char id[UPD_NAME_MAX + 24];
	snprintf(id, sizeof id, "%s@%" PRIu64, m->name, m->version);
	if (!m->has_sig) {
		*code = "unsigned";
		return tlcm_fail(why, cap, TLCM_EPERM, "update %s is not signed"
				 " (%s missing)", id, m->key_id[0]
				 ? "signature" : "key_id");
	}
	const upd_key_t *k = upd_keys_find(ks, m->key_id);
	if (!k) {
		*code = "unknown_key";
		return tlcm_fail(why, cap, TLCM_EPERM, "update %s is signed by "
				 "key '%s', which this device does not trust "
				 "(%zu trusted key%s)", id, m->key_id, ks->n,
				 ks->n == 1 ? "" : "s");
	}
	char msg[UPD_MSG_MAX];
	size_t len = upd_message(m, msg, sizeof msg);
	if (!len || crypto_sign_verify_detached(m->sig, (const uint8_t *)msg,
						len, k->pk)) {
		*code = "bad_signature";
		return tlcm_fail(why, cap, TLCM_EPERM, "update %s: the "
				 "signature by key '%s' does not verify over "
				 "its name, version, sha256 and times", id,
				 m->key_id);
	}
	if (m->version <= running) {
		*code = "rollback";
		return tlcm_fail(why, cap, TLCM_EPERM, "update %s: version %"
				 PRIu64 " is not above the running %" PRIu64
				 " (no rollbacks)", id, m->version, running);
	}
	if (m->expires_s <= now_s) {
		*code = "expired";
		return tlcm_fail(why, cap, TLCM_EPERM, "update %s: its metadata"
				 " expired at %" PRId64 " (now %" PRId64 ", %"
				 PRId64 " s ago)", id, m->expires_s, now_s,
				 now_s - m->expires_s);
	}
	*code = "";
	return 0;
}

int upd_secret_load(const char *path, char id[UPD_KEY_ID_MAX + 1],
		    uint8_t sk[UPD_SK_BYTES], char *why, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "%s: %s", path, strerror(errno));
	char line[512], b64[256];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		if (line[0] == '#')
			continue;
		char kid[128];
		if (sscanf(line, "%127s %255s", kid, b64) == 2 &&
		    upd_valid_key_id(kid) && upd_b64_decode(b64, sk,
							    UPD_SK_BYTES)) {
			snprintf(id, UPD_KEY_ID_MAX + 1, "%.*s", UPD_KEY_ID_MAX,
				 kid);
			found = true;
		}
	}
	sodium_memzero(line, sizeof line);
	sodium_memzero(b64, sizeof b64);
	fclose(f);
	if (!found)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: no \"KEY_ID "
				 "BASE64\" secret key (64 bytes; a .pub file "
				 "cannot sign)", path);
	return 0;
}

int upd_sign(upd_meta_t *m, const char *key_id,
	     const uint8_t sk[UPD_SK_BYTES])
{
	if (upd_crypto_init() || !upd_valid_key_id(key_id))
		return TLCM_EINVAL;
	char msg[UPD_MSG_MAX];
	size_t len = upd_message(m, msg, sizeof msg);
	if (!len)
		return TLCM_EINVAL;
	crypto_sign_detached(m->sig, NULL, (const uint8_t *)msg, len, sk);
	snprintf(m->key_id, sizeof m->key_id, "%s", key_id);
	upd_b64_encode(m->sig, UPD_SIG_BYTES, m->sig_b64, sizeof m->sig_b64);
	m->has_sig = true;
	return 0;
}

int upd_sha256_file(const char *path, uint64_t len, char hex[65], char *why,
		    size_t cap)
{
	if (upd_crypto_init())
		return tlcm_fail(why, cap, TLCM_EINTERNAL, "libsodium does not "
				 "initialise");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT
							  : TLCM_EIO,
				 "%s: %s", path, strerror(errno));
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	static __thread uint8_t buf[1 << 16];
	uint64_t left = len;
	while (left) {
		size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return tlcm_fail(why, cap, TLCM_EIO, "%s: read: %s",
					 path, strerror(e));
		}
		if (n == 0)
			break;
		crypto_hash_sha256_update(&st, buf, (size_t)n);
		if (len != UINT64_MAX)
			left -= (uint64_t)n;
	}
	close(fd);
	uint8_t d[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&st, d);
	sodium_bin2hex(hex, 65, d, sizeof d);
	return 0;
}
