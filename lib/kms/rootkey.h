/* Root-key custody for a region's key service (docs/kms-rootkey.md).
 *
 * A kh_rootkey holds (or reaches, in an HSM) the region's root key and every
 * root-key version not yet retired.  It wraps 32-byte account keys into
 * versioned blobs (envelope encryption: a fresh data key per blob), unwraps
 * them, rotates to a new root-key version and derives keys only the holder can
 * compute.  Two backends:
 *   - sealed key file (default): DIR/root-<v>.sealed, sealed under a key
 *     derived with Argon2id from an operator secret;
 *   - PKCS#11: non-extractable AES-256 keys generated inside a token.
 *
 * Thread safety: wrap, unwrap, rewrap and derive may be called concurrently
 * on one kh_rootkey; rotate is serialised against them.  Free only when no
 * other call is running. */
#ifndef KH_KMS_ROOTKEY_H
#define KH_KMS_ROOTKEY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"
#include "keyhold/secret.h"
#include "common/buf.h"

typedef struct kh_rootkey kh_rootkey;

/* Blob sizes (docs/kms-rootkey.md §3).  A blob is at most KH_ROOTKEY_BLOB_MAX. */
#define KH_ROOTKEY_BLOB_MAX 1024
#define KH_ROOTKEY_AD_MAX 65536      /* longest accepted ad */
#define KH_ROOTKEY_CONTEXT_MAX 4096  /* longest accepted derive context */
#define KH_ROOTKEY_VERSIONS_MAX 1000 /* root-key versions per region */
#define KH_ROOTKEY_SECRET_MIN 16     /* shortest accepted operator secret */

/* Create a new sealed-file root key for region_id in dir (created 0700 if
 * missing): writes dir/derive.sealed and dir/root-1.sealed, both sealed under
 * Argon2id(operator_secret).  KH_ERR_EXISTS if either file exists.
 * region_id: 1..64 chars of [A-Za-z0-9._-].  On success *out is a new handle
 * (free with kh_rootkey_free); on failure *out is NULL. */
kh_err kh_rootkey_file_create(const char *dir, const char *region_id,
                              const kh_secret *operator_secret, kh_rootkey **out);

/* Open the sealed-file root keys in dir: every root-<v>.sealed present is
 * loaded; the highest version is current.  KH_ERR_NOTFOUND if there is none;
 * KH_ERR_AUTH if the operator secret is wrong, a file is damaged or it was
 * sealed for another region id. */
kh_err kh_rootkey_file_open(const char *dir, const char *region_id,
                            const kh_secret *operator_secret, kh_rootkey **out);

/* Open the root key held in a PKCS#11 token: dlopen(module), C_Initialize,
 * find the token labelled token_label, log in as user with pin, and find the
 * AES-256 keys labelled key_label (version 1), key_label.v<N> (version N) and
 * the HMAC key key_label.mac.  With create, missing version-1 and mac keys are
 * generated inside the token (non-extractable, sensitive).  Existing keys that
 * are extractable or not sensitive are refused (KH_ERR_HSM).
 * KH_ERR_NOTFOUND: no such token or (without create) no such key;
 * KH_ERR_AUTH: wrong PIN; KH_ERR_UNSUPPORTED: the token offers neither
 * CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD (or no CKM_SHA256_HMAC);
 * KH_ERR_HSM: any other token error (detail names the call and CKR_ code).
 * key_label: 1..64 chars of [A-Za-z0-9._-]. */
kh_err kh_rootkey_pkcs11_open(const char *module, const char *token_label,
                              const kh_secret *pin, const char *key_label, bool create,
                              kh_rootkey **out);

/* Release the handle (wipes key material, closes the PKCS#11 session and
 * finalises the module when its last user goes).  NULL is a no-op. */
void kh_rootkey_free(kh_rootkey *k);

/* Printable id of the current root-key version for log entries, e.g.
 * "file:eu-west:v1" or "pkcs11:kh-root:v3"; no spaces.  Owned by k; valid
 * until the next kh_rootkey_rotate or kh_rootkey_free (do not call it
 * concurrently with rotate). */
const char *kh_rootkey_id(const kh_rootkey *k);
/* The same id copied into out (n bytes, truncated) under the rotate lock:
 * safe to call while another thread rotates. */
void kh_rootkey_id_copy(kh_rootkey *k, char *out, size_t n);

/* Current root-key version (1, 2, ...). */
uint32_t kh_rootkey_version(const kh_rootkey *k);

/* Wrap a 32-byte account key bound to ad (e.g. kh_ad_build(region, account,
 * purpose)) under the current root-key version: the blob is appended to out
 * (at most KH_ROOTKEY_BLOB_MAX bytes; out unchanged on failure). */
kh_err kh_rootkey_wrap(kh_rootkey *k, const uint8_t key[32], const uint8_t *ad,
                       size_t adlen, kh_buf *out);

/* Unwrap a blob made by kh_rootkey_wrap with the same ad.  Any damage, wrong
 * ad, a blob from another root key, region or backend, or a retired root-key
 * version gives KH_ERR_AUTH and key is zeroed.  KH_ERR_HSM if the token
 * failed (key zeroed). */
kh_err kh_rootkey_unwrap(kh_rootkey *k, const uint8_t *blob, size_t n, const uint8_t *ad,
                         size_t adlen, uint8_t key[32]);

/* Make a new root-key version current for wraps (file: dir/root-<v+1>.sealed
 * written exclusively; PKCS#11: new token key "<label>.v<v+1>").  Older
 * versions keep unwrapping until retired (file deleted / token object
 * destroyed).  On failure the current version is unchanged. */
kh_err kh_rootkey_rotate(kh_rootkey *k);

/* Unwrap blob (any held version) and wrap its key again under the current
 * version; the new blob is appended to out.  Errors as for unwrap. */
kh_err kh_rootkey_rewrap(kh_rootkey *k, const uint8_t *blob, size_t n, const uint8_t *ad,
                         size_t adlen, kh_buf *out);

/* 32 bytes that only the root-key holder can compute for context (at most
 * KH_ROOTKEY_CONTEXT_MAX bytes), deterministic across reopen and NOT changed
 * by rotate: file backend BLAKE2b-256 keyed by the region's derivation key;
 * PKCS#11 HMAC-SHA256 by the token key "<label>.mac". */
kh_err kh_rootkey_derive(kh_rootkey *k, const uint8_t *context, size_t clen, uint8_t out[32]);

/* ---- Internal to lib/kms/rootkey*.c and the fuzz targets ---------------- */

enum { KH_ROOTKEY_BACKEND_FILE = 1, KH_ROOTKEY_BACKEND_PKCS11 = 2 };
enum { KH_ROOTKEY_ALG_XCHACHA = 1, KH_ROOTKEY_ALG_AESKWP = 2 };
#define KH_ROOTKEY_BLOB_MAGIC "KHRW"
#define KH_ROOTKEY_BLOB_FIXED 11 /* magic, format, backend, version, alg */

/* A parsed blob; pointers point into the parsed bytes. */
typedef struct kh_rootkey_blob {
  uint8_t backend, alg;
  uint32_t version;
  const uint8_t *wrapped; /* wrapped data key */
  size_t wrapped_len;
  const uint8_t *nonce;   /* 24 bytes */
  const uint8_t *ct;      /* 48 bytes: account key + tag */
  size_t header_len;      /* blob[0, header_len) is authenticated as AD */
} kh_rootkey_blob;

/* Bounded, strict parser for docs/kms-rootkey.md §3.  KH_ERR_FORMAT on any
 * malformed input (callers that unwrap report KH_ERR_AUTH instead). */
kh_err kh_rootkey_blob_parse(const uint8_t *p, size_t n, kh_rootkey_blob *b);

/* A parsed sealed key file (docs/kms-rootkey.md §2); pointers into the input. */
enum { KH_ROOTKEY_SEALED_ROOT = 1, KH_ROOTKEY_SEALED_DERIVE = 2 };
#define KH_ROOTKEY_SEALED_MAGIC "KHRKSEAL"
#define KH_ROOTKEY_SEALED_HEADER 39 /* bytes authenticated as AD */
#define KH_ROOTKEY_SEALED_BYTES 111
typedef struct kh_rootkey_sealed {
  uint8_t kind;                /* KH_ROOTKEY_SEALED_* */
  uint32_t opslimit, memkib;   /* Argon2id cost, bounded by the parser */
  uint32_t version;            /* root-key version (1 for the derive key) */
  const uint8_t *salt;         /* 16 bytes */
  const uint8_t *nonce;        /* 24 bytes */
  const uint8_t *ct;           /* 48 bytes */
} kh_rootkey_sealed;

/* Bounded, strict parser; KH_ERR_FORMAT on malformed input, including Argon2
 * costs outside the accepted range (so a damaged file cannot ask for 4 TiB). */
kh_err kh_rootkey_sealed_parse(const uint8_t *p, size_t n, kh_rootkey_sealed *s);

/* What a backend provides to the dispatcher in rootkey.c.  hdr is the blob's
 * first KH_ROOTKEY_BLOB_FIXED bytes (it names the version), for binding. */
typedef struct kh_rootkey_ops {
  uint8_t backend, alg;
  size_t wrapped_len;
  const char *kind; /* "file" / "pkcs11", first part of the id */
  /* append exactly wrapped_len bytes protecting dk under version v */
  kh_err (*wrap_dk)(void *st, uint32_t v, const uint8_t dk[32], const uint8_t *hdr,
                    kh_buf *out);
  /* KH_ERR_AUTH (dk zeroed) if w does not open under version v */
  kh_err (*unwrap_dk)(void *st, uint32_t v, const uint8_t *w, size_t wlen,
                      const uint8_t *hdr, uint8_t dk[32]);
  bool (*has_version)(void *st, uint32_t v);
  kh_err (*rotate)(void *st, uint32_t newv);
  kh_err (*derive)(void *st, const uint8_t *msg, size_t mlen, uint8_t out[32]);
  void (*free)(void *st);
} kh_rootkey_ops;

/* Wrap backend state st into a handle; on failure ops->free(st) is called.
 * name is the middle part of the id (region id or key label). */
kh_err kh_rootkey_backend_new(const kh_rootkey_ops *ops, void *st, const char *name,
                              uint32_t current, kh_rootkey **out);

/* true if s is 1..64 chars of [A-Za-z0-9._-] */
bool kh_rootkey_name_ok(const char *s);

#endif
