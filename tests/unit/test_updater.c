/* test_updater.c — signed model updates (nodes/updater) against
 * tlcm-test-server in its own process, with a real features.xnnpack
 * consumer that hot-reloads.
 *
 * First the pure parts (nodes/updater/verify.h): the signed message
 * against the literal bytes of docs/api.md, trusted keys (items, files,
 * a secret key refused), offers parsed and checked for every refusal —
 * the signatures made here with libsodium over a message written out
 * independently. Then graphs (updater → features.xnnpack.control,
 * features.events → updater.status, a frame source and a sink keeping
 * Features and ModelEvents): a good update (keys and offer made with
 * `tinylcm model keygen|sign`) is downloaded, verified, swapped and
 * hot-reloaded — the features node reports the new model and the
 * embeddings change length — and a second run refuses the same version
 * (the running version is in the records); tampered bytes, a bad
 * signature, tampered metadata, an unknown key id, unsigned, an older and
 * an equal version, expired metadata: each refused with its code, the
 * running model untouched (file, no partial, no reload); a download cut
 * halfway resumes with Range from where it stopped and completes (every
 * byte sent once); a model that verifies but does not load goes back to
 * the previous one automatically and is refused afterwards; a control
 * message (SetParam check) starts a check on demand. Last, kill
 * -9: a device process (this binary with --device) is killed at random
 * moments, after random amounts of the download, and at each rename/link
 * of the swap (before and after it, through --wrap), TLCM_LONG_ROUNDS
 * rounds (default 18: every swap crash point once): after each kill the model file is the old or the
 * new one, whole, and loads; a final run installs the new one. No
 * assertion depends on timing.
 *
 * usage: test_updater SERVER_BINARY TINYLCM_BINARY
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/control_fb.h"
#include "fb/features_fb.h"
#include "fb/frame_fb.h"
#include "fb/model_event_fb.h"
#include "nodes/features/model.h"
#include "nodes/nodes.h"
#include "nodes/updater/updater.h"
#include "nodes/updater/verify.h"
#include "tests/tlcm_test.h"
#include "tests/unit/model_build.h"

#define DEV "pi-upd-01"
#define API_KEY "FLEETKEY"
#define SIDE 8
#define BIG 1000 /* the embedding of v4: 1000 values (~256 KB of weights) */

#define SHAPE(...)                                                      \
	(int32_t[]){__VA_ARGS__},                                       \
		(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static const char *server_bin, *tinylcm_bin;
static char root[256];
static tlcm_registry_t reg;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void msleep(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- files --------------------------------------------------------------- */

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = NULL;
	size_t n = 0, cap = 0;
	int c;
	while ((c = fgetc(f)) != EOF) {
		if (n + 2 > cap)
			b = realloc(b, cap = cap ? cap * 2 : 256);
		b[n++] = (char)c;
	}
	fclose(f);
	if (!b)
		b = calloc(1, 1);
	else
		b[n] = 0;
	return b;
}

/* SHA-256 hex of a file, computed here with libsodium directly. */
static bool sha_of(const char *path, char hex[65])
{
	size_t n;
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	unsigned char buf[8192];
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		crypto_hash_sha256_update(&st, buf, n);
	fclose(f);
	unsigned char d[32];
	crypto_hash_sha256_final(&st, d);
	sodium_bin2hex(hex, 65, d, 32);
	return true;
}

static void sha_bytes(const void *p, size_t n, char hex[65])
{
	unsigned char d[32];
	crypto_hash_sha256(d, p, n);
	sodium_bin2hex(hex, 65, d, 32);
}

static bool exists(const char *path)
{
	struct stat st;
	return !stat(path, &st);
}

static void copy_file(const char *from, const char *to)
{
	char *t = NULL;
	FILE *f = fopen(from, "rb");
	size_t n = 0;
	if (f) {
		fseek(f, 0, SEEK_END);
		n = (size_t)ftell(f);
		rewind(f);
		t = malloc(n ? n : 1);
		if (fread(t, 1, n, f) != n)
			n = 0;
		fclose(f);
	}
	if (!t) {
		TLCM__FAIL("cannot read %s", from);
		exit(1);
	}
	write_file(to, t, n);
	free(t);
}

/* ---- models -------------------------------------------------------------- */

/* v3: [1,8,8,1] -> GlobalAveragePool -> embedding [1,1]. v4: a
 * FullyConnected to 1000 values (~256 KB). bad: a valid model whose
 * output is not called `embedding`: it verifies, signs and hashes fine,
 * and features.xnnpack cannot run it. */
static void *make_model(int kind, size_t *len)
{
	tlcm_mb_t *b = tlcm_mb_new(kind == 3 ? "m-v3" : kind == 4 ? "m-v4"
						     : "m-bad");
	int x = tlcm_mb_tensor(b, "image", SHAPE(1, SIDE, SIDE, 1), NULL);
	int y;
	if (kind == 3) {
		y = tlcm_mb_tensor(b, "embedding", SHAPE(1, 1), NULL);
		tlcm_op_t o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, x, -1,
					 -1, y);
		tlcm_mb_add_op(b, &o);
	} else {
		size_t out = kind == 4 ? BIG : 4;
		float *w = malloc(out * SIDE * SIDE * sizeof *w);
		float *bias = calloc(out, sizeof *bias);
		for (size_t i = 0; i < out * SIDE * SIDE; i++)
			w[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
		int k = tlcm_mb_tensor(b, "fc.w", SHAPE((int32_t)out,
							SIDE * SIDE), w);
		int kb = tlcm_mb_tensor(b, "fc.b", SHAPE((int32_t)out), bias);
		y = tlcm_mb_tensor(b, kind == 4 ? "embedding" : "features",
				   SHAPE(1, (int32_t)out), NULL);
		tlcm_op_t o = tlcm_mb_op(tlcm_OpType_FullyConnected, x, k, kb,
					 y);
		tlcm_mb_add_op(b, &o);
		free(w);
		free(bias);
	}
	tlcm_mb_io(b, x, &y, 1);
	tlcm_mb_prep(b, 1.0f / 255, NULL, 0, NULL, 0);
	return tlcm_mb_finish(b, len);
}

static char v3_path[512], v4_path[512], bad_path[512], v4x_path[512];
static char v3_sha[65], v4_sha[65], bad_sha[65];
static size_t v4_size, bad_size;

static void make_models(void)
{
	size_t n;
	for (int k = 3; k <= 5; k++) {
		void *m = make_model(k, &n);
		CHECK(m != NULL);
		char *p = k == 3 ? v3_path : k == 4 ? v4_path : bad_path;
		snprintf(p, 512, "%s/%s.tlm", root, k == 3 ? "v3" : k == 4
							 ? "v4" : "bad");
		write_file(p, m, n);
		sha_bytes(m, n, k == 3 ? v3_sha : k == 4 ? v4_sha : bad_sha);
		if (k == 4) {
			v4_size = n;
			/* the same size, one byte flipped in the middle */
			((unsigned char *)m)[n / 2] ^= 0x40;
			snprintf(v4x_path, sizeof v4x_path, "%s/v4-tampered.tlm",
				 root);
			write_file(v4x_path, m, n);
		}
		if (k == 5)
			bad_size = n;
		free(m);
	}
	/* the loader itself takes all three */
	char why[512];
	tlcm_model_t *m;
	const char *paths[] = {v3_path, v4_path, bad_path};
	for (int i = 0; i < 3; i++) {
		CHECK_INT(tlcm_model_load(&m, paths[i], why, sizeof why), 0);
		tlcm_model_free(m);
	}
	fprintf(stderr, "models: v3, v4 %zu bytes, bad %zu bytes\n", v4_size,
		bad_size);
}

/* ---- keys and offers, made here with libsodium --------------------------- */

typedef struct {
	char id[65];
	unsigned char pk[32], sk[64];
	char pk_b64[64];
} key_t_;

static key_t_ k1, k2;

static void key_make(key_t_ *k, const char *id)
{
	snprintf(k->id, sizeof k->id, "%s", id);
	crypto_sign_keypair(k->pk, k->sk);
	sodium_bin2base64(k->pk_b64, sizeof k->pk_b64, k->pk, 32,
			  sodium_base64_VARIANT_ORIGINAL);
}

typedef struct {
	const char *name;
	uint64_t version;
	const char *sha;
	uint64_t size;
	int64_t created, expires;
	const key_t_ *signer; /* NULL: unsigned */
	const char *key_id;   /* NULL: the signer's */
	bool flip_sig;        /* one bit of the signature flipped */
	uint64_t claim_version; /* nonzero: the JSON says this version */
	const char *url;
} offer_t;

/* The offer's JSON object; the signature over the message of docs/api.md
 * written out here, independently of nodes/updater/verify.c. */
static cJSON *offer_json(const offer_t *o)
{
	cJSON *j = cJSON_CreateObject();
	uint64_t shown = o->claim_version ? o->claim_version : o->version;
	cJSON_AddStringToObject(j, "name", o->name);
	cJSON_AddNumberToObject(j, "version", (double)shown);
	cJSON_AddStringToObject(j, "sha256", o->sha);
	cJSON_AddNumberToObject(j, "size", (double)o->size);
	cJSON_AddNumberToObject(j, "created_s", (double)o->created);
	cJSON_AddNumberToObject(j, "expires_s", (double)o->expires);
	if (o->signer) {
		char msg[512];
		int n = snprintf(msg, sizeof msg, "tinylcm-model/1\n%s\n%llu\n"
				 "%s\n%lld\n%lld\n", o->name,
				 (unsigned long long)o->version, o->sha,
				 (long long)o->created, (long long)o->expires);
		unsigned char sig[64];
		crypto_sign_detached(sig, NULL, (unsigned char *)msg,
				     (unsigned long long)n, o->signer->sk);
		if (o->flip_sig)
			sig[17] ^= 0x01;
		char b64[128];
		sodium_bin2base64(b64, sizeof b64, sig, 64,
				  sodium_base64_VARIANT_ORIGINAL);
		cJSON_AddStringToObject(j, "key_id", o->key_id ? o->key_id
							      : o->signer->id);
		cJSON_AddStringToObject(j, "signature", b64);
	}
	char url[200];
	snprintf(url, sizeof url, "/api/v1/models/%s/%llu", o->name,
		 (unsigned long long)o->version);
	cJSON_AddStringToObject(j, "url", o->url ? o->url : url);
	return j;
}

/* ---- the pure parts ------------------------------------------------------ */

static void test_message(void)
{
	upd_meta_t m = {0};
	snprintf(m.name, sizeof m.name, "fmnist-cnn");
	m.version = 4;
	snprintf(m.sha256, sizeof m.sha256, "%s",
		 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f0"
		 "0a08");
	m.created_s = 1795000000;
	m.expires_s = 1797592000;
	char out[UPD_MSG_MAX];
	size_t n = upd_message(&m, out, sizeof out);
	const char *want = "tinylcm-model/1\nfmnist-cnn\n4\n"
			   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15"
			   "d6c15b0f00a08\n1795000000\n1797592000\n";
	CHECK_UINT(n, strlen(want));
	CHECK(n && !memcmp(out, want, n));
	/* a name that could smuggle a line in is not expressible */
	snprintf(m.name, sizeof m.name, "a\nb");
	CHECK_UINT(upd_message(&m, out, sizeof out), 0);
	snprintf(m.name, sizeof m.name, "fmnist-cnn");
	m.sha256[3] = 'F'; /* upper case: not the contract's hex */
	CHECK_UINT(upd_message(&m, out, sizeof out), 0);
}

static void test_keys(void)
{
	upd_keys_t ks = {0};
	char why[512], item[200];
	snprintf(item, sizeof item, "%s:%s", k1.id, k1.pk_b64);
	CHECK_INT(upd_keys_add_item(&ks, item, why, sizeof why), 0);
	CHECK_UINT(ks.n, 1);
	CHECK(upd_keys_find(&ks, k1.id) &&
	      !memcmp(upd_keys_find(&ks, k1.id)->pk, k1.pk, 32));
	CHECK(!upd_keys_find(&ks, "nope"));
	/* the same id again replaces */
	snprintf(item, sizeof item, "%s:%s", k1.id, k2.pk_b64);
	CHECK_INT(upd_keys_add_item(&ks, item, why, sizeof why), 0);
	CHECK_UINT(ks.n, 1);
	CHECK(!memcmp(upd_keys_find(&ks, k1.id)->pk, k2.pk, 32));
	CHECK(upd_keys_add_item(&ks, "nocolon", why, sizeof why) != 0);
	CHECK_CONTAINS(why, "KEY_ID:BASE64");
	CHECK(upd_keys_add_item(&ks, "k:!!!!", why, sizeof why) != 0);
	CHECK(upd_keys_add_item(&ks, "bad id:AAAA", why, sizeof why) != 0);
	/* a secret key where a public one belongs: refused, saying so */
	char sk64[128];
	sodium_bin2base64(sk64, sizeof sk64, k1.sk, 64,
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(item, sizeof item, "s:%s", sk64);
	CHECK(upd_keys_add_item(&ks, item, why, sizeof why) != 0);
	CHECK_CONTAINS(why, "secret");
	upd_keys_free(&ks);
	/* a key file: comments, blank lines, two keys */
	char path[600], text[600];
	snprintf(path, sizeof path, "%s/trusted.pub", root);
	snprintf(text, sizeof text, "# fleet keys\n\n%s %s\n  %s %s # next\n",
		 k1.id, k1.pk_b64, k2.id, k2.pk_b64);
	write_file(path, text, strlen(text));
	CHECK_INT(upd_keys_load(&ks, path, why, sizeof why), 0);
	CHECK_UINT(ks.n, 2);
	CHECK(upd_keys_find(&ks, k2.id) &&
	      !memcmp(upd_keys_find(&ks, k2.id)->pk, k2.pk, 32));
	upd_keys_free(&ks);
	snprintf(text, sizeof text, "%s %s extra\n", k1.id, k1.pk_b64);
	write_file(path, text, strlen(text));
	CHECK(upd_keys_load(&ks, path, why, sizeof why) != 0);
	CHECK_CONTAINS(why, ":1:");
	upd_keys_free(&ks);
	CHECK_INT(upd_keys_load(&ks, "/nonexistent/keys", why, sizeof why),
		  TLCM_ENOENT);
	upd_keys_free(&ks);
}

/* upd_meta_from_json + upd_check on an offer: the code, "" when taken. */
static const char *judge(const offer_t *o, uint64_t running,
			 const upd_keys_t *ks, char *why, size_t cap)
{
	cJSON *j = offer_json(o);
	upd_meta_t m;
	const char *code = "";
	int rc = upd_meta_from_json(j, &m, &code, why, cap);
	cJSON_Delete(j);
	if (!rc)
		rc = upd_check(&m, ks, running, now_s(), &code, why, cap);
	return rc ? code : "";
}

static void test_checks(void)
{
	upd_keys_t ks = {0};
	char why[600], item[200];
	snprintf(item, sizeof item, "%s:%s", k1.id, k1.pk_b64);
	CHECK_INT(upd_keys_add_item(&ks, item, why, sizeof why), 0);
	int64_t t = now_s();
	offer_t good = {.name = "m", .version = 4, .sha = v4_sha,
			.size = v4_size, .created = t - 60,
			.expires = t + 86400, .signer = &k1};
	offer_t o;
	CHECK_STR(judge(&good, 3, &ks, why, sizeof why), "");
	o = good, o.signer = NULL;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "unsigned");
	CHECK_CONTAINS(why, "not signed");
	o = good, o.signer = &k2;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "unknown_key");
	CHECK_CONTAINS(why, k2.id);
	/* k2 signs but claims to be k1 */
	o = good, o.signer = &k2, o.key_id = k1.id;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "bad_signature");
	o = good, o.flip_sig = true;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "bad_signature");
	/* any signed field changed after signing */
	o = good, o.claim_version = 5;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "bad_signature");
	o = good, o.sha = v3_sha;
	{
		/* signed over v4's sha, JSON showing v3's: build by hand */
		cJSON *j = offer_json(&good);
		cJSON_ReplaceItemInObject(j, "sha256",
					  cJSON_CreateString(v3_sha));
		upd_meta_t m;
		const char *code;
		CHECK_INT(upd_meta_from_json(j, &m, &code, why, sizeof why),
			  0);
		CHECK(upd_check(&m, &ks, 3, now_s(), &code, why, sizeof why));
		CHECK_STR(code, "bad_signature");
		cJSON_ReplaceItemInObject(j, "sha256", cJSON_CreateString(
							       v4_sha));
		cJSON_ReplaceItemInObject(j, "expires_s",
					  cJSON_CreateNumber((double)t + 999));
		CHECK_INT(upd_meta_from_json(j, &m, &code, why, sizeof why),
			  0);
		CHECK(upd_check(&m, &ks, 3, now_s(), &code, why, sizeof why));
		CHECK_STR(code, "bad_signature");
		cJSON_Delete(j);
	}
	CHECK_STR(judge(&good, 4, &ks, why, sizeof why), "rollback");
	CHECK_CONTAINS(why, "not above the running 4");
	CHECK_STR(judge(&good, 9, &ks, why, sizeof why), "rollback");
	o = good, o.expires = t - 5;
	CHECK_STR(judge(&o, 3, &ks, why, sizeof why), "expired");
	CHECK_CONTAINS(why, "expired");
	/* the signature is judged before anything it covers: an unsigned
	 * rollback is refused as unsigned */
	o = good, o.signer = NULL;
	CHECK_STR(judge(&o, 9, &ks, why, sizeof why), "unsigned");
	/* malformed metadata */
	/* SHA stands for v4's digest */
	const char *bad[] = {
		"{\"name\":\"m\",\"version\":0,\"sha256\":\"SHA\",\"size\":1,"
		"\"created_s\":1,\"expires_s\":2}",
		"{\"name\":\"m x\",\"version\":1,\"sha256\":\"SHA\",\"size\":1,"
		"\"created_s\":1,\"expires_s\":2}",
		"{\"name\":\"m\",\"version\":1.5,\"sha256\":\"SHA\",\"size\":1,"
		"\"created_s\":1,\"expires_s\":2}",
		"{\"name\":\"m\",\"version\":1,\"sha256\":\"abc\",\"size\":1,"
		"\"created_s\":1,\"expires_s\":2}",
		"{\"name\":\"m\",\"version\":1,\"sha256\":\"SHA\",\"size\":-1,"
		"\"created_s\":1,\"expires_s\":2}",
		"{\"name\":\"m\",\"version\":1,\"sha256\":\"SHA\",\"size\":1,"
		"\"expires_s\":2}",
		"[1]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[400];
		const char *at = strstr(bad[i], "SHA");
		if (at)
			snprintf(text, sizeof text, "%.*s%s%s",
				 (int)(at - bad[i]), bad[i], v4_sha, at + 3);
		else
			snprintf(text, sizeof text, "%s", bad[i]);
		cJSON *j = cJSON_Parse(text);
		upd_meta_t m;
		const char *code = "";
		CHECK(upd_meta_from_json(j, &m, &code, why, sizeof why) != 0);
		CHECK_STR(code, "bad_metadata");
		cJSON_Delete(j);
	}
	/* upd_sign (the CLI's) makes what a device accepts */
	upd_meta_t m = {0};
	snprintf(m.name, sizeof m.name, "m");
	m.version = 4;
	memcpy(m.sha256, v4_sha, 65);
	m.created_s = t;
	m.expires_s = t + 100;
	CHECK_INT(upd_sign(&m, k1.id, k1.sk), 0);
	const char *code;
	CHECK_INT(upd_check(&m, &ks, 3, t, &code, why, sizeof why), 0);
	upd_keys_free(&ks);
	/* upd_sha256_file agrees with libsodium on the whole file */
	char hex[65];
	CHECK_INT(upd_sha256_file(v4_path, UINT64_MAX, hex, why, sizeof why),
		  0);
	CHECK_STR(hex, v4_sha);
}

/* ---- the server (another process) ---------------------------------------- */

typedef struct {
	pid_t pid;
	int data, ctl;
	char dir[512], state[600], url[128];
} srv_t;

static srv_t srv;

static int srv_start(srv_t *s, const char *name)
{
	snprintf(s->dir, sizeof s->dir, "%s/%s", root, name);
	mkdir(s->dir, 0755);
	snprintf(s->state, sizeof s->state, "%s/log", s->dir);
	char pf[700];
	snprintf(pf, sizeof pf, "%s/ports", s->dir);
	const char *argv[] = {server_bin, "--port-file", pf, "--state",
			      s->state, "--api-key", API_KEY, NULL};
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0 && !getenv("TLCM_TEST_VERBOSE"))
			dup2(fd, 2);
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	s->pid = pid;
	for (int i = 0; i < 1000; i++) {
		FILE *f = fopen(pf, "r");
		if (f) {
			int ok = fscanf(f, "%d %d", &s->data, &s->ctl) == 2;
			fclose(f);
			if (ok) {
				snprintf(s->url, sizeof s->url,
					 "http://127.0.0.1:%d/api/v1", s->data);
				return 0;
			}
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		msleep(10);
	}
	TLCM__FAIL("%s did not start", server_bin);
	return -1;
}

static void srv_stop(srv_t *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	char **b = arg;
	size_t old = *b ? strlen(*b) : 0, len = sz * n;
	char *nb = realloc(*b, old + len + 1);
	if (!nb)
		return 0;
	memcpy(nb + old, p, len);
	nb[old + len] = 0;
	*b = nb;
	return len;
}

static char *srv_ctl(const char *method, const char *path, const char *body)
{
	CURL *c = curl_easy_init();
	char url[256], *out = NULL;
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.ctl, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	long status = 0;
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc || status != 200) {
		TLCM__FAIL("control %s %s: %s, HTTP %ld: %s",
			method, path, curl_easy_strerror(rc), status,
			out ? out : "");
		tlcm_test_failures++;
		free(out);
		return NULL;
	}
	return out ? out : strdup("");
}

static double srv_stat(const char *key)
{
	char *b = srv_ctl("GET", "/_test/stats", NULL);
	cJSON *j = cJSON_Parse(b ? b : "");
	free(b);
	double v = -1;
	const char *dot = strchr(key, '.');
	const cJSON *o = j;
	if (dot) {
		char k[64];
		snprintf(k, sizeof k, "%.*s", (int)(dot - key), key);
		o = cJSON_GetObjectItemCaseSensitive(j, k);
		key = dot + 1;
	}
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
	if (cJSON_IsNumber(i))
		v = i->valuedouble;
	cJSON_Delete(j);
	return v;
}

/* Offer these (replacing what was offered) and serve path -> file. */
static void srv_offer(const offer_t *o, size_t n, const char *serve_path,
		      const char *file)
{
	cJSON *j = cJSON_CreateObject();
	cJSON *a = cJSON_AddArrayToObject(j, "offer");
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, offer_json(&o[i]));
	if (serve_path) {
		cJSON *s = cJSON_AddObjectToObject(j, "serve");
		cJSON_AddStringToObject(s, serve_path, file);
	}
	char *b = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	free(srv_ctl("POST", "/_test/models", b));
	free(b);
}

static void srv_fault(const char *rule)
{
	free(srv_ctl("POST", "/_test/faults", rule));
}

/* "download PATH FROM STATUS BYTES" lines of the log since line `from`. */
typedef struct {
	uint64_t from, bytes;
	int status;
} dl_t;

static size_t srv_downloads(size_t skip_lines, dl_t *out, size_t max,
			    size_t *lines)
{
	FILE *f = fopen(srv.state, "r");
	size_t n = 0, ln = 0;
	char line[1400];
	while (f && fgets(line, sizeof line, f)) {
		if (ln++ < skip_lines)
			continue;
		char path[1024], from[32];
		int st;
		unsigned long long b;
		if (sscanf(line, "download %1023s %31s %d %llu", path, from,
			   &st, &b) == 4 && n < max) {
			out[n].from = strcmp(from, "-")
					      ? strtoull(from, NULL, 10) : 0;
			out[n].status = st;
			out[n].bytes = b;
			n++;
		}
	}
	if (f)
		fclose(f);
	if (lines)
		*lines = ln;
	return n;
}

static size_t srv_log_lines(void)
{
	size_t n;
	dl_t d;
	srv_downloads(SIZE_MAX, &d, 0, &n);
	return n;
}

/* ---- test nodes ---------------------------------------------------------- */

/* what the sink saw */
typedef struct {
	char who;  /* 'u' updater event, 'f' features event, 'F' Features */
	int kind;
	uint64_t version, running;
	size_t emb; /* Features: embedding length */
	char model[64], code[32], reason[400];
} seen_t;

static seen_t seen[20000];
static size_t nseen;
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int upd_done;

static void seen_reset(void)
{
	pthread_mutex_lock(&seen_mu);
	nseen = 0;
	pthread_mutex_unlock(&seen_mu);
	atomic_store(&upd_done, 0);
}

static const tlcm_port_desc_t sink_in[] = {
	{"features", "FEAT", "", TLCM_PORT_OPTIONAL},
	{"fevents", "MEVT", "", TLCM_PORT_OPTIONAL},
	{"uevents", "MEVT", "", TLCM_PORT_OPTIONAL},
	{0},
};

static int sink_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	const char *why;
	seen_t e = {0};
	void *copy = malloc(m->size);
	memcpy(copy, tlcm_msg_data(m), m->size);
	if (port == 0) {
		CHECK(!tlcm_Features_verify_as_root(copy, m->size, &why));
		e.who = 'F';
		e.emb = tlcm_Features_embedding_len(
			tlcm_Features_as_root(copy));
	} else {
		CHECK(!tlcm_ModelEvent_verify_as_root(copy, m->size, &why));
		tlcm_ModelEvent_table_t t = tlcm_ModelEvent_as_root(copy);
		e.who = port == 1 ? 'f' : 'u';
		e.kind = tlcm_ModelEvent_kind(t);
		e.version = tlcm_ModelEvent_version(t);
		e.running = tlcm_ModelEvent_running(t);
		const char *s = tlcm_ModelEvent_model(t);
		snprintf(e.model, sizeof e.model, "%s", s ? s : "");
		s = tlcm_ModelEvent_code(t);
		snprintf(e.code, sizeof e.code, "%s", s ? s : "");
		s = tlcm_ModelEvent_reason(t);
		snprintf(e.reason, sizeof e.reason, "%s", s ? s : "");
	}
	free(copy);
	pthread_mutex_lock(&seen_mu);
	if (nseen < sizeof seen / sizeof seen[0])
		seen[nseen++] = e;
	pthread_mutex_unlock(&seen_mu);
	return 0;
}

static const tlcm_node_type_t sink_type = {
	.name = "msink", .doc = "keep Features lengths and ModelEvents",
	.inputs = sink_in, .process = sink_process};

static size_t count_events(char who, int kind, const char *code)
{
	size_t n = 0;
	pthread_mutex_lock(&seen_mu);
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].who == who && seen[i].kind == kind &&
		    (!code || !strcmp(seen[i].code, code)))
			n++;
	pthread_mutex_unlock(&seen_mu);
	return n;
}

static const seen_t *find_event(char who, int kind)
{
	const seen_t *r = NULL;
	pthread_mutex_lock(&seen_mu);
	for (size_t i = 0; i < nseen && !r; i++)
		if (seen[i].who == who && seen[i].kind == kind)
			r = &seen[i];
	pthread_mutex_unlock(&seen_mu);
	return r;
}

/* embedding lengths: the first and the last Features */
static void emb_ends(size_t *first, size_t *last, size_t *count)
{
	*first = *last = *count = 0;
	pthread_mutex_lock(&seen_mu);
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].who == 'F') {
			if (!(*count)++)
				*first = seen[i].emb;
			*last = seen[i].emb;
		}
	pthread_mutex_unlock(&seen_mu);
}

/* framesrc: an 8x8 gray frame every 2 ms until the updater finished,
 * then 3 more (those run on whatever model is in place by then). */
typedef struct {
	uint64_t id;
	int after;
} fsrc_t;

static const tlcm_port_desc_t fsrc_out[] = {{"out", "FRAM", "", 0}, {0}};

static int fsrc_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 2000000);
	return 0;
}

static int fsrc_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	fsrc_t *f = st;
	(void)now;
	if (atomic_load(&upd_done) && f->after++ >= 3)
		return TLCM_ECLOSED;
	if (tlcm_stopping(ctx))
		return TLCM_ECLOSED;
	uint8_t px[SIDE * SIDE];
	for (size_t p = 0; p < sizeof px; p++)
		px[p] = (uint8_t)(p * 3 + f->id);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, sizeof px + 256);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	tlcm_fbb_ref_t pv = tlcm_Frame_pixels_create(&b, px, sizeof px);
	tlcm_Frame_start(&b);
	tlcm_Frame_add_id(&b, ++f->id);
	tlcm_Frame_add_width(&b, SIDE);
	tlcm_Frame_add_height(&b, SIDE);
	tlcm_Frame_add_format(&b, tlcm_PixelFormat_Gray8);
	tlcm_Frame_add_pixels(&b, pv);
	tlcm_set_trace(ctx, f->id);
	return tlcm_emit_end(ctx, 0, &b, tlcm_Frame_end(&b),
			     tlcm_Frame_IDENTIFIER);
}

static const tlcm_node_type_t fsrc_type = {
	.name = "framesrc", .doc = "test frames until the updater is done",
	.outputs = fsrc_out, .state_size = sizeof(fsrc_t), .init = fsrc_init,
	.tick = fsrc_tick};

/* updwrap: the updater, its describe() kept at fini, upd_done set when
 * it finished */
static char described[4096];
static tlcm_node_type_t updwrap_type;

static int updwrap_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	int rc = tlcm_node_updater.tick(ctx, st, now);
	if (rc == TLCM_ECLOSED)
		atomic_store(&upd_done, 1);
	return rc;
}

static void updwrap_fini(tlcm_ctx_t *ctx, void *st)
{
	if (tlcm_node_updater.describe(ctx, st, described, sizeof described))
		described[0] = 0;
	tlcm_node_updater.fini(ctx, st);
}

static double desc_num(const char *key)
{
	cJSON *j = cJSON_Parse(described);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	double v = cJSON_IsNumber(i) ? i->valuedouble : -1;
	if (!j)
		fprintf(stderr, "describe() is not JSON: %s\n", described);
	cJSON_Delete(j);
	return v;
}

static char *desc_str(const char *key)
{
	cJSON *j = cJSON_Parse(described);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	char *v = strdup(cJSON_IsString(i) ? i->valuestring : "");
	cJSON_Delete(j);
	return v;
}

/* ---- running graphs ------------------------------------------------------ */

static int run_yaml(const char *yaml)
{
	char path[512];
	snprintf(path, sizeof path, "%s/graph-XXXXXX.yaml", root);
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	unlink(path);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return rc;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t o = {.quiet = true, .headless = true,
			     .handle_signals = true};
	tlcm_run_result_t res;
	rc = tlcm_graph_run(g, &o, &res);
	if (rc || res.status)
		fprintf(stderr, "run: %s (%s)\n",
			tlcm_strerror(rc ? rc : res.status), res.why);
	rc = rc ? rc : res.status;
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	return rc;
}

/* One device: a fresh (or kept) store and model directory. */
typedef struct {
	char dir[512], file[600], store[600], keys[700];
} dev_t_;

static void dev_fresh(dev_t_ *d, const char *name)
{
	snprintf(d->dir, sizeof d->dir, "%s/%s", root, name);
	mkdir(d->dir, 0755);
	snprintf(d->file, sizeof d->file, "%s/m.tlm", d->dir);
	snprintf(d->store, sizeof d->store, "%s/store", d->dir);
	copy_file(v3_path, d->file);
	d->keys[0] = 0;
}

/* The graph of a device: updater (+ extra params) before features (so
 * that an unconfirmed swap is undone before features loads the file),
 * features reloading on the updater's control, a sink keeping both
 * nodes' events and the Features. */
static int run_device(const dev_t_ *d, const char *extra)
{
	char yaml[8192], keys[800];
	if (d->keys[0])
		snprintf(keys, sizeof keys, "keys_file: '%s'", d->keys);
	else
		snprintf(keys, sizeof keys, "keys: ['%s:%s']", k1.id,
			 k1.pk_b64);
	snprintf(yaml, sizeof yaml,
		 "graph: upd\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: batch }\n"
		 "nodes:\n"
		 "  upd: { type: updwrap, params: { url: '%s', device_id: %s, "
		 "api_key: %s, model: m, version: 3, file: '%s', %s, "
		 "exit_after: check, backoff_base: 5ms, backoff_cap: 50ms, "
		 "timeout: 10s, connect_timeout: 5s, load_timeout: 60s, "
		 "sync_every: 16KiB%s%s } }\n"
		 "  cam: { type: framesrc }\n"
		 "  feat: { type: features.xnnpack, params: { model: '%s' } }\n"
		 "  sink: { type: msink }\n"
		 "edges:\n"
		 "  - { from: upd.control, to: feat.control }\n"
		 "  - { from: feat.events, to: upd.status, feedback: true }\n"
		 "  - { from: feat.events, to: sink.fevents }\n"
		 "  - { from: upd.events, to: sink.uevents }\n"
		 "  - { from: cam.out, to: feat.in }\n"
		 "  - { from: feat.out, to: sink.features }\n",
		 d->store, srv.url, DEV, API_KEY, d->file, keys,
		 extra ? ", " : "", extra ? extra : "", d->file);
	seen_reset();
	described[0] = 0;
	return run_yaml(yaml);
}

static void check_file_is(const char *path, const char *sha)
{
	char h[65] = "";
	CHECK(sha_of(path, h));
	if (strcmp(h, sha))
		fprintf(stderr, "  %s: sha %.12s, expected %.12s\n", path, h,
			sha);
	CHECK_STR(h, sha);
}

/* ---- scenarios ----------------------------------------------------------- */

static offer_t good_offer(void)
{
	int64_t t = now_s();
	return (offer_t){.name = "m", .version = 4, .sha = v4_sha,
			 .size = v4_size, .created = t - 60,
			 .expires = t + 86400, .signer = &k1};
}

static int run_cli(const char *const *argv, const char *out_path)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (out_path) {
			int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC,
				      0644);
			dup2(fd, 1);
		}
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0 && !getenv("TLCM_TEST_VERBOSE"))
			dup2(null, 2);
		execv(tinylcm_bin, (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_untouched(const dev_t_ *d)
{
	char part[700];
	check_file_is(d->file, v3_sha);
	snprintf(part, sizeof part, "%s.part", d->file);
	CHECK(!exists(part));
	/* the consumer was never asked to reload: every Features of v3 */
	CHECK_UINT(count_events('f', tlcm_ModelEventKind_Loaded, NULL), 0);
	CHECK_UINT(count_events('f', tlcm_ModelEventKind_LoadFailed, NULL), 0);
	size_t first, last, n;
	emb_ends(&first, &last, &n);
	CHECK(n > 0);
	CHECK_UINT(first, 1);
	CHECK_UINT(last, 1);
	CHECK_DBL(desc_num("running"), 3);
	CHECK_DBL(desc_num("installed"), 0);
}

/* A good update, keys and offer made by `tinylcm model keygen|sign`. */
static void test_good(void)
{
	fprintf(stderr, "good update\n");
	dev_t_ d;
	dev_fresh(&d, "good");
	char prefix[600], keyf[700], off[700];
	snprintf(prefix, sizeof prefix, "%s/core-2026a", d.dir);
	snprintf(keyf, sizeof keyf, "%s.key", prefix);
	snprintf(d.keys, sizeof d.keys, "%s.pub", prefix);
	snprintf(off, sizeof off, "%s/offer.json", d.dir);
	const char *kg[] = {tinylcm_bin, "model", "keygen", "--key-id",
			    "core-2026a", "-o", prefix, NULL};
	CHECK_INT(run_cli(kg, "/dev/null"), 0);
	const char *sg[] = {tinylcm_bin, "model", "sign", v4_path, "--name",
			    "m", "--version", "4", "--key", keyf,
			    "--expires-in", "30d", NULL};
	CHECK_INT(run_cli(sg, off), 0);
	/* the CLI's own check of the pair, and of a tampered file */
	const char *vf[] = {tinylcm_bin, "model", "verify", v4_path, "--offer",
			    off, "--keys", d.keys, "--running", "3", NULL};
	CHECK_INT(run_cli(vf, "/dev/null"), 0);
	const char *vx[] = {tinylcm_bin, "model", "verify", v4x_path,
			    "--offer", off, "--keys", d.keys, NULL};
	CHECK_INT(run_cli(vx, "/dev/null"), 1);
	char *text = read_text(off);
	cJSON *oj = cJSON_Parse(text ? text : "");
	free(text);
	CHECK(cJSON_IsObject(oj));
	/* the offer, verbatim from the CLI */
	cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "offer");
	cJSON_AddItemToArray(a, oj);
	cJSON *s = cJSON_AddObjectToObject(j, "serve");
	cJSON_AddStringToObject(s, "/api/v1/models/m/4", v4_path);
	char *b = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	free(srv_ctl("POST", "/_test/models", b));
	free(b);
	size_t l0 = srv_log_lines();
	CHECK_INT(run_device(&d, NULL), 0);
	/* on disk: the new model in place, the old one kept, nothing else */
	char prev[700], part[700];
	snprintf(prev, sizeof prev, "%s.prev", d.file);
	snprintf(part, sizeof part, "%s.part", d.file);
	check_file_is(d.file, v4_sha);
	check_file_is(prev, v3_sha);
	CHECK(!exists(part));
	/* the updater's events, in order, and the features node's report */
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Available, NULL), 1);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Downloaded, NULL), 1);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Installed, NULL), 1);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Refused, NULL), 0);
	const seen_t *ins = find_event('u', tlcm_ModelEventKind_Installed);
	CHECK(ins && ins->version == 4 && ins->running == 4);
	const seen_t *ld = find_event('f', tlcm_ModelEventKind_Loaded);
	CHECK(ld != NULL);
	if (ld)
		CHECK_STR(ld->model, "m-v4");
	CHECK_UINT(count_events('f', tlcm_ModelEventKind_LoadFailed, NULL), 0);
	/* hot: the same features node ran v3 (1 value), then v4 (1000) */
	size_t first, last, n;
	emb_ends(&first, &last, &n);
	CHECK_UINT(first, 1);
	CHECK_UINT(last, BIG);
	CHECK_DBL(desc_num("running"), 4);
	CHECK_DBL(desc_num("installed"), 1);
	CHECK_DBL(desc_num("resumes"), 0);
	dl_t dl[16];
	size_t nd = srv_downloads(l0, dl, 16, NULL);
	CHECK_UINT(nd, 1);
	CHECK(nd == 1 && dl[0].from == 0 && dl[0].status == 200 &&
	      dl[0].bytes == v4_size);
	/* the next run (same store) runs v4: the same offer is now a
	 * rollback, refused without a download */
	l0 = srv_log_lines();
	CHECK_INT(run_device(&d, NULL), 0);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Refused, "rollback"),
		   1);
	CHECK_DBL(desc_num("running"), 4);
	check_file_is(d.file, v4_sha);
	CHECK_UINT(srv_downloads(l0, dl, 16, NULL), 0);
	emb_ends(&first, &last, &n);
	CHECK_UINT(first, BIG);
}

/* Each bad offer refused with its code, the running model untouched. */
static void refused_case(const char *name, const offer_t *o,
			 const char *serve_file, const char *code,
			 const char *words, bool downloads)
{
	fprintf(stderr, "refused: %s\n", name);
	dev_t_ d;
	dev_fresh(&d, name);
	char path[200];
	snprintf(path, sizeof path, "/api/v1/models/m/%llu",
		 (unsigned long long)o->version);
	srv_offer(o, 1, path, serve_file);
	size_t l0 = srv_log_lines();
	CHECK_INT(run_device(&d, NULL), 0);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Refused, code), 1);
	const seen_t *r = find_event('u', tlcm_ModelEventKind_Refused);
	if (r && words)
		CHECK_CONTAINS(r->reason, words);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Installed, NULL), 0);
	char *lc = desc_str("last_code");
	CHECK_STR(lc, code);
	free(lc);
	check_untouched(&d);
	dl_t dl[8];
	CHECK_UINT(srv_downloads(l0, dl, 8, NULL), downloads ? 1 : 0);
}

static void test_refusals(void)
{
	offer_t o;
	int64_t t = now_s();
	o = good_offer();
	refused_case("tampered", &o, v4x_path, "sha256_mismatch", "SHA-256",
		     true);
	o = good_offer(), o.flip_sig = true;
	refused_case("badsig", &o, v4_path, "bad_signature", "does not verify",
		     false);
	/* signed as v4, presented as v5 */
	o = good_offer(), o.claim_version = 5;
	o.url = "/api/v1/models/m/5";
	refused_case("badmeta", &o, v4_path, "bad_signature", NULL, false);
	o = good_offer(), o.signer = &k2;
	refused_case("unknownkey", &o, v4_path, "unknown_key", k2.id, false);
	o = good_offer(), o.signer = NULL;
	refused_case("unsigned", &o, v4_path, "unsigned", "not signed", false);
	o = good_offer(), o.version = 2;
	refused_case("older", &o, v4_path, "rollback", "not above the running 3",
		     false);
	o = good_offer(), o.version = 3;
	refused_case("equal", &o, v4_path, "rollback", "no rollbacks", false);
	o = good_offer(), o.created = t - 100000, o.expires = t - 3600;
	refused_case("expired", &o, v4_path, "expired", "expired at", false);
	o = good_offer(), o.size = v4_size - 1000;
	refused_case("short", &o, v4_path, "too_large", "more than", true);
}

/* A download cut halfway resumes with Range where it stopped. */
static void test_resume(void)
{
	fprintf(stderr, "download cut halfway, resumed\n");
	dev_t_ d;
	dev_fresh(&d, "resume");
	offer_t o = good_offer();
	srv_offer(&o, 1, "/api/v1/models/m/4", v4_path);
	double sent0 = srv_stat("download_sent");
	size_t l0 = srv_log_lines();
	char rule[64];
	snprintf(rule, sizeof rule, "download cut=%zu", v4_size / 2);
	srv_fault(rule);
	CHECK_INT(run_device(&d, NULL), 0);
	check_file_is(d.file, v4_sha);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Installed, NULL), 1);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Failed, "network"),
		   1);
	dl_t dl[8];
	size_t nd = srv_downloads(l0, dl, 8, NULL);
	CHECK_UINT(nd, 2);
	if (nd == 2) {
		CHECK_UINT(dl[0].from, 0);
		CHECK_INT(dl[0].status, 200);
		CHECK_UINT(dl[1].from, v4_size / 2);
		CHECK_INT(dl[1].status, 206);
		CHECK_UINT(dl[1].bytes, v4_size - v4_size / 2);
	}
	/* every byte went over the wire once */
	CHECK_DBL(srv_stat("download_sent") - sent0, (double)v4_size);
	CHECK_DBL(desc_num("resumes"), 1);
	CHECK_DBL(desc_num("bytes"), (double)v4_size);
	size_t first, last, n;
	emb_ends(&first, &last, &n);
	CHECK_UINT(last, BIG);
}

/* Verified, but the consumer cannot load it: back to the previous model
 * by itself, and never taken again. */
static void test_load_failure(void)
{
	fprintf(stderr, "verifies but does not load: automatic return\n");
	dev_t_ d;
	dev_fresh(&d, "badload");
	offer_t o = good_offer();
	o.sha = bad_sha;
	o.size = bad_size;
	srv_offer(&o, 1, "/api/v1/models/m/4", bad_path);
	CHECK_INT(run_device(&d, NULL), 0);
	check_file_is(d.file, v3_sha);
	CHECK_UINT(count_events('f', tlcm_ModelEventKind_LoadFailed, NULL), 1);
	const seen_t *lf = find_event('f', tlcm_ModelEventKind_LoadFailed);
	if (lf)
		CHECK_CONTAINS(lf->reason, "no output 'embedding'");
	/* the previous file loaded again, then the updater said so */
	CHECK_UINT(count_events('f', tlcm_ModelEventKind_Loaded, NULL), 1);
	const seen_t *ld = find_event('f', tlcm_ModelEventKind_Loaded);
	if (ld)
		CHECK_STR(ld->model, "m-v3");
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_RolledBack,
				"load_failed"), 1);
	const seen_t *rb = find_event('u', tlcm_ModelEventKind_RolledBack);
	CHECK(rb && rb->version == 4 && rb->running == 3);
	if (rb)
		CHECK_CONTAINS(rb->reason, "no output 'embedding'");
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Installed, NULL), 0);
	CHECK_DBL(desc_num("running"), 3);
	CHECK_DBL(desc_num("rolled_back"), 1);
	size_t first, last, n;
	emb_ends(&first, &last, &n);
	CHECK_UINT(first, 1);
	CHECK_UINT(last, 1);
	/* the next check: refused, not downloaded again */
	size_t l0 = srv_log_lines();
	CHECK_INT(run_device(&d, NULL), 0);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Refused,
				"load_failed"), 1);
	dl_t dl[4];
	CHECK_UINT(srv_downloads(l0, dl, 4, NULL), 0);
	check_untouched(&d);
}

/* poker: once the server saw one model check, a control message
 * (SetParam check) asks the updater for another; once it saw that one
 * too, the graph stops. */
typedef struct {
	int stage;
	double base;
	uint64_t t0;
} poke_t;

static double poke_base;
static const tlcm_port_desc_t poke_out[] = {{"out", "CTRL", "", 0}, {0}};

static int poke_init(tlcm_ctx_t *ctx, void *st)
{
	((poke_t *)st)->base = poke_base;
	((poke_t *)st)->t0 = mono_ns();
	tlcm_set_tick(ctx, 20000000);
	return 0;
}

static int poke_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	poke_t *p = st;
	(void)now;
	if (tlcm_stopping(ctx))
		return TLCM_ECLOSED;
	double n = srv_stat("by_route.models") - p->base;
	if (p->stage == 0 && n >= 1) {
		tlcm_fbb_t b;
		int rc = tlcm_emit_begin(ctx, 0, &b, 256);
		if (rc)
			return rc;
		tlcm_fbb_ref_t k = tlcm_fbb_cstring(&b, "check");
		tlcm_fbb_ref_t v = tlcm_fbb_cstring(&b, "now");
		tlcm_Control_start(&b);
		tlcm_Control_add_op(&b, tlcm_ControlOp_SetParam);
		tlcm_Control_add_name(&b, k);
		tlcm_Control_add_value(&b, v);
		p->stage = 1;
		return tlcm_emit_end(ctx, 0, &b, tlcm_Control_end(&b),
				     tlcm_Control_IDENTIFIER);
	}
	/* a second check that never comes ends the run after a minute
	 * (and the checks below fail) rather than hanging it */
	if (p->stage < 2 && (n >= 2 || mono_ns() - p->t0 > 60000000000ull)) {
		p->stage = 2;
		tlcm_request_stop();
	}
	return 0;
}

static const tlcm_node_type_t poke_type = {
	.name = "poker", .doc = "asks the updater for a check (test)",
	.outputs = poke_out, .state_size = sizeof(poke_t), .init = poke_init,
	.tick = poke_tick};

/* A check on demand: SetParam check on the updater's control port. */
static void test_trigger(void)
{
	fprintf(stderr, "check triggered by a control message\n");
	dev_t_ d;
	dev_fresh(&d, "trigger");
	srv_offer(NULL, 0, NULL, NULL);
	poke_base = srv_stat("by_route.models");
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
		 "graph: trig\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s' }\n"
		 "nodes:\n"
		 "  upd: { type: updwrap, params: { url: '%s', device_id: %s, "
		 "api_key: %s, model: m, version: 3, file: '%s', "
		 "keys: ['%s:%s'], interval: 1h } }\n"
		 "  poke: { type: poker }\n"
		 "edges:\n"
		 "  - { from: poke.out, to: upd.control }\n",
		 d.store, srv.url, DEV, API_KEY, d.file, k1.id, k1.pk_b64);
	described[0] = 0;
	CHECK_INT(run_yaml(yaml), 0);
	/* two checks within an interval of an hour: the second was asked */
	CHECK_DBL(desc_num("checks"), 2);
	CHECK_DBL(srv_stat("by_route.models") - poke_base, 2);
	CHECK_DBL(desc_num("running"), 3);
}

/* ---- kill -9 ------------------------------------------------------------- */

/* Crash points for the device process: TLCM_TEST_CRASH="N:before" or
 * "N:after" kills it (SIGKILL, like kill -9) at the Nth rename/link of a
 * path in the kill test's model directory, before or after the call. */
int __real_rename(const char *from, const char *to);
int __real_link(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);
int __wrap_link(const char *from, const char *to);
static int crash_n = -1, crash_seen;
static bool crash_after;

static void crash_setup(void)
{
	const char *e = getenv("TLCM_TEST_CRASH");
	char w[16];
	if (e && sscanf(e, "%d:%15s", &crash_n, w) == 2)
		crash_after = !strcmp(w, "after");
}

static bool crash_here(const char *a, const char *b)
{
	if (crash_n < 0 || (!strstr(a, "/kill-dev/") && !strstr(b,
							       "/kill-dev/")))
		return false;
	return ++crash_seen == crash_n;
}

int __wrap_rename(const char *from, const char *to)
{
	bool c = crash_here(from, to);
	if (c && !crash_after)
		raise(SIGKILL);
	int rc = __real_rename(from, to);
	if (c)
		raise(SIGKILL);
	return rc;
}

int __wrap_link(const char *from, const char *to)
{
	bool c = crash_here(from, to);
	if (c && !crash_after)
		raise(SIGKILL);
	int rc = __real_link(from, to);
	if (c)
		raise(SIGKILL);
	return rc;
}

/* test_updater --device FILE STORE URL KEYID:PUB: one device run. */
static int device_main(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	crash_setup();
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
		 "graph: device\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: batch }\n"
		 "nodes:\n"
		 "  upd: { type: updwrap, params: { url: '%s', device_id: %s, "
		 "api_key: %s, model: m, version: 3, file: '%s', "
		 "keys: ['%s'], exit_after: check, backoff_base: 5ms, "
		 "backoff_cap: 50ms, timeout: 10s, load_timeout: 60s, "
		 "sync_every: 16KiB, max_tries: 1000 } }\n"
		 "  cam: { type: framesrc }\n"
		 "  feat: { type: features.xnnpack, params: { model: '%s' } }\n"
		 "edges:\n"
		 "  - { from: upd.control, to: feat.control }\n"
		 "  - { from: feat.events, to: upd.status, feedback: true }\n"
		 "  - { from: cam.out, to: feat.in }\n",
		 argv[3], argv[4], DEV, API_KEY, argv[2], argv[5], argv[2]);
	if (!getenv("TLCM_TEST_VERBOSE"))
		tlcm_log_level = TLCM_LOG_ERROR;
	return run_yaml(yaml) ? 1 : 0;
}

static pid_t device_spawn(const dev_t_ *d, const char *crash)
{
	char key[200];
	snprintf(key, sizeof key, "%s:%s", k1.id, k1.pk_b64);
	pid_t pid = fork();
	if (pid == 0) {
		if (crash)
			setenv("TLCM_TEST_CRASH", crash, 1);
		else
			unsetenv("TLCM_TEST_CRASH");
		const char *argv[] = {"test_updater", "--device", d->file,
				      d->store, srv.url, key, NULL};
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void make_store(const dev_t_ *d)
{
	/* made here, not by a device that may be killed while RocksDB
	 * creates it (see test_uploader) */
	char why[600];
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_BATCH};
	tlcm_store_t *s = NULL;
	CHECK_INT(tlcm_store_open(&s, d->store, &o, why, sizeof why), 0);
	if (s)
		tlcm_store_close(s);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* After a kill: the model file is v3 or v4, whole, and loads. */
static char check_intact(const dev_t_ *d)
{
	char h[65] = "", why[512], prev[700];
	CHECK(sha_of(d->file, h));
	bool v3 = !strcmp(h, v3_sha), v4 = !strcmp(h, v4_sha);
	if (!v3 && !v4)
		TLCM__FAIL("%s is neither v3 nor v4 (%.16s)",
			d->file, h);
	CHECK(v3 || v4);
	tlcm_model_t *m = NULL;
	CHECK_INT(tlcm_model_load(&m, d->file, why, sizeof why), 0);
	tlcm_model_free(m);
	snprintf(prev, sizeof prev, "%s.prev", d->file);
	if (exists(prev)) {
		CHECK(sha_of(prev, h));
		CHECK(!strcmp(h, v3_sha) || !strcmp(h, v4_sha));
	}
	return v4 ? '4' : '3';
}

static void test_kill9(void)
{
	const char *env = getenv("TLCM_LONG_ROUNDS");
	int rounds = env ? atoi(env) : 18;
	if (rounds < 1)
		rounds = 1;
	fprintf(stderr, "kill -9: %d rounds (download, swap, random)\n",
		rounds);
	static const char *const crashes[] = {"1:before", "1:after",
					      "2:before", "2:after",
					      "3:before", "3:after"};
	dev_t_ d;
	dev_fresh(&d, "kill-dev");
	make_store(&d);
	offer_t o = good_offer();
	srv_offer(&o, 1, "/api/v1/models/m/4", v4_path);
	free(srv_ctl("DELETE", "/_test/faults", NULL));
	srv_fault("download rate=400000 x*");
	size_t l0 = srv_log_lines();
	uint64_t x = 0x2545f4914f6cdd1dull;
	int killed = 0, crashed = 0, finished = 0, resets = 0, mid = 0;
	int v4_after = 0;
	for (int r = 0; r < rounds; r++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		int mode = r % 3;
		const char *crash = mode == 1 ? crashes[(r / 3) % 6] : NULL;
		double sent0 = srv_stat("download_sent");
		double want = (double)v4_size * (0.2 + (double)(x % 30) / 100);
		unsigned ms = (unsigned)((x >> 20) % 1500);
		pid_t pid = device_spawn(&d, crash);
		uint64_t t0 = mono_ns();
		int st = 0;
		bool gone = false;
		for (;;) {
			if (waitpid(pid, &st, WNOHANG) == pid) {
				gone = true;
				break;
			}
			if (mono_ns() - t0 > 120000000000ull)
				break; /* stuck: the check below fails */
			if (mode == 0 &&
			    srv_stat("download_sent") - sent0 >= want) {
				mid++;
				break;
			}
			if (mode == 2 && mono_ns() - t0 >=
						 (uint64_t)ms * 1000000u)
				break;
			msleep(mode == 0 ? 5 : 1);
		}
		if (!gone) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			killed++;
		} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
			crashed++;
		} else {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			finished++;
		}
		char v = check_intact(&d);
		v4_after += v == '4';
		if (gone && WIFEXITED(st)) {
			/* it finished: v4 installed; start over from v3 so
			 * that later rounds have work */
			CHECK(v == '4');
			nftw(d.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
			dev_fresh(&d, "kill-dev");
			make_store(&d);
			resets++;
		}
	}
	/* the last run: no kill, no crash, no throttle */
	free(srv_ctl("DELETE", "/_test/faults", NULL));
	pid_t pid = device_spawn(&d, NULL);
	int st;
	uint64_t t0 = mono_ns();
	bool done = false;
	while (mono_ns() - t0 < 120000000000ull) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			done = true;
			break;
		}
		msleep(10);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	CHECK(done && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	check_file_is(d.file, v4_sha);
	dl_t dl[256];
	size_t nd = srv_downloads(l0, dl, 256, NULL), resumed = 0;
	for (size_t i = 0; i < nd; i++)
		resumed += dl[i].status == 206 && dl[i].from > 0;
	fprintf(stderr, "  %d killed (%d mid-download), %d crashed at a swap "
		"step, %d finished (reset %d), %d rounds left v4 in place; %zu "
		"downloads, %zu resumed with Range\n", killed, mid, crashed,
		finished, resets, v4_after, nd, resumed);
	/* kills after 20-50 % of the bytes (52-130 KB), with 16 KiB made
	 * durable at a time: some run resumed where a killed one stopped */
	if (mid)
		CHECK(resumed >= 1);
	/* and the device knows it runs v4 now (its records) */
	CHECK_INT(run_device(&d, "max_tries: 1000"), 0);
	CHECK_DBL(desc_num("running"), 4);
	CHECK_UINT(count_events('u', tlcm_ModelEventKind_Refused, "rollback"),
		   1);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
	tlcm_builtin_nodes(&reg);
	updwrap_type = tlcm_node_updater;
	updwrap_type.name = "updwrap";
	updwrap_type.tick = updwrap_tick;
	updwrap_type.fini = updwrap_fini;
	tlcm_registry_add(&reg, &updwrap_type);
	tlcm_registry_add(&reg, &sink_type);
	tlcm_registry_add(&reg, &fsrc_type);
	tlcm_registry_add(&reg, &poke_type);
	if (argc > 1 && !strcmp(argv[1], "--device"))
		return device_main(argc, argv);
	if (argc < 3) {
		fprintf(stderr, "usage: test_updater SERVER_BINARY "
			"TINYLCM_BINARY\n");
		return 2;
	}
	server_bin = argv[1];
	tinylcm_bin = argv[2];
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sodium_init() < 0) {
		TLCM__FAIL("sodium_init");
		return 1;
	}
	snprintf(root, sizeof root, "/tmp/tlcm-upd-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	if (!getenv("TLCM_TEST_VERBOSE"))
		tlcm_log_level = TLCM_LOG_ERROR;
	key_make(&k1, "core-2026a");
	key_make(&k2, "rogue-1");
	make_models();
	const char *only = getenv("TLCM_TEST_ONLY");
#define RUN(name) \
	if (!only || strstr(only, #name)) \
		test_##name()
	RUN(message);
	RUN(keys);
	RUN(checks);
	if (srv_start(&srv, "server"))
		return 1;
	RUN(good);
	RUN(refusals);
	RUN(resume);
	RUN(load_failure);
	RUN(trigger);
	RUN(kill9);
	srv_stop(&srv);
	if (!tlcm_test_failures)
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s\n", root);
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
