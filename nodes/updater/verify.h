/* verify.h — what makes a model update trustworthy (nodes/updater/):
 * the signed message of docs/api.md, the device's trusted keys, the
 * checks an offer must pass, and SHA-256 of files. No I/O except reading
 * key files and hashing files; shared by the `updater` node and `tinylcm
 * model keygen|sign|verify`.
 *
 * An offer (one entry of POST /models/available's `updates`) is signed by
 * the core with Ed25519 (libsodium crypto_sign_detached) over exactly
 *
 *   tinylcm-model/1\n<name>\n<version>\n<sha256 hex>\n<created_s>\n
 *   <expires_s>\n          (one string: the line break here is not in it)
 *
 * (decimal integers, the SHA-256 in 64 lower-case hex digits). The device
 * trusts a set of keys, each known by its key id (key_id → 32-byte public
 * key), from its configuration; upd_check() refuses an offer, with a code
 * and a sentence, when it is unsigned, signed by a key not in the set,
 * its signature does not verify, its version is not above the running one
 * (no rollbacks) or its metadata has expired. docs/models.md, "Signed
 * updates", says how keys are made, deployed and rotated.
 */
#ifndef TLCM_UPDATER_VERIFY_H
#define TLCM_UPDATER_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UPD_NAME_MAX 128  /* model names: [A-Za-z0-9._-]{1,128} */
#define UPD_KEY_ID_MAX 64 /* key ids: [A-Za-z0-9._-]{1,64} */
#define UPD_PK_BYTES 32   /* crypto_sign_PUBLICKEYBYTES */
#define UPD_SK_BYTES 64   /* crypto_sign_SECRETKEYBYTES */
#define UPD_SIG_BYTES 64  /* crypto_sign_BYTES */
#define UPD_MSG_MAX 400   /* the signed message, at most */

/* One offer, as the core describes it. */
typedef struct upd_meta {
	char name[UPD_NAME_MAX + 1];
	uint64_t version;
	char sha256[65];          /* lower-case hex */
	uint64_t size;
	int64_t created_s, expires_s;
	char key_id[UPD_KEY_ID_MAX + 1]; /* "" when absent */
	uint8_t sig[UPD_SIG_BYTES];
	bool has_sig;             /* both key_id and signature present */
	char sig_b64[128];        /* as received (for records) */
	char url[1024];           /* "" when absent */
} upd_meta_t;

typedef struct upd_key {
	char id[UPD_KEY_ID_MAX + 1];
	uint8_t pk[UPD_PK_BYTES];
} upd_key_t;

typedef struct upd_keys {
	upd_key_t *k;
	size_t n, cap;
} upd_keys_t;

/* libsodium's sodium_init(), once per process; 0 or TLCM_EINTERNAL. */
int upd_crypto_init(void);

bool upd_valid_name(const char *s);   /* a model name */
bool upd_valid_key_id(const char *s);

/* The message the signature covers, into out (UPD_MSG_MAX bytes); its
 * length, or 0 when the metadata cannot be expressed (bad name). */
size_t upd_message(const upd_meta_t *m, char *out, size_t cap);

/* Add a trusted key: "KEY_ID:BASE64" (a `keys` parameter item). A key id
 * already present is replaced. 0, or TLCM_EINVAL with why. */
int upd_keys_add_item(upd_keys_t *ks, const char *item, char *why,
		      size_t cap);
/* Add the keys of a key file: lines "KEY_ID BASE64PUBLIC", '#' starts a
 * comment, blank lines ignored. 0, or TLCM_E* with why (file:line). */
int upd_keys_load(upd_keys_t *ks, const char *path, char *why, size_t cap);
const upd_key_t *upd_keys_find(const upd_keys_t *ks, const char *id);
void upd_keys_free(upd_keys_t *ks);

/* An offer from its JSON object (a cJSON *; void * keeps cJSON out of
 * this header). Missing key_id or signature is not an error here
 * (has_sig false: upd_check refuses it as unsigned). 0, or TLCM_EPROTO
 * with *code "bad_metadata" and why. */
int upd_meta_from_json(const void *json, upd_meta_t *m, const char **code,
		       char *why, size_t cap);
/* The offer as a JSON object text (malloc'd): the fields above, the
 * signature in base64 — what `tinylcm model sign` prints and what the
 * updater keeps in its records. */
char *upd_meta_to_json(const upd_meta_t *m);

/* May the device install m while it runs version `running`, at wall
 * clock now_s? 0, or TLCM_EPERM with *code one of "unsigned",
 * "unknown_key", "bad_signature", "rollback", "expired", and a sentence
 * in why. Checked in that order: nothing the core says is believed
 * before its signature is. */
int upd_check(const upd_meta_t *m, const upd_keys_t *ks, uint64_t running,
	      int64_t now_s, const char **code, char *why, size_t cap);

/* The one key of a secret key file as `tinylcm model keygen` writes it:
 * a line "KEY_ID BASE64" of 64 bytes ('#' lines are comments). Shared by
 * `tinylcm model sign` and the core's signer (nodes/core/models.c). 0, or
 * TLCM_ENOENT/TLCM_EIO/TLCM_EINVAL with why naming the file (a .pub file
 * holds no secret and is refused). */
int upd_secret_load(const char *path, char id[UPD_KEY_ID_MAX + 1],
		    uint8_t sk[UPD_SK_BYTES], char *why, size_t cap);

/* Sign m with a 64-byte secret key (sets sig, sig_b64, key_id). */
int upd_sign(upd_meta_t *m, const char *key_id,
	     const uint8_t sk[UPD_SK_BYTES]);

/* SHA-256 of the first len bytes of a file (len UINT64_MAX: all of it),
 * as 64 lower-case hex digits. 0, or TLCM_EIO/TLCM_ENOENT with why. */
int upd_sha256_file(const char *path, uint64_t len, char hex[65],
		    char *why, size_t cap);

/* base64 (libsodium's original variant, with padding). */
bool upd_b64_decode(const char *s, uint8_t *out, size_t want);
void upd_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

#endif
