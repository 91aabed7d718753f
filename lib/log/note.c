/* C2SP signed notes (c2sp.org/signed-note; docs/log.md §3) and Ed25519
 * cosignatures (c2sp.org/tlog-cosignature; docs/log.md §4). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs, strndup, gmtime_r */
#endif
#include "log/log_internal.h"
#include "common/err.h"
#include "common/hex.h"
#include "crypto/crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255
static const char SIG_PREFIX[] = "\xe2\x80\x94 "; /* U+2014 EM DASH, space */
#define SIG_PREFIX_LEN 4
static const char PRIVATE_PREFIX[] = "PRIVATE+KEY+";

struct kh_note_signer {
  char *name;
  uint32_t hash;
  int alg;
  uint8_t pk[32];
  uint8_t *sk; /* 64-byte libsodium secret key (seed || pk), sodium memory */
};

/* Decode one UTF-8 sequence at p (n > 0 bytes left); returns its length, or
 * 0 if invalid (overlong, surrogate, > U+10FFFF, truncated).  *cp gets it. */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
  uint8_t c = p[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xe0) == 0xc0) {
    len = 2; v = c & 0x1f; min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3; v = c & 0x0f; min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4; v = c & 0x07; min = 0x10000;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

bool kh_utf8_ok(const uint8_t *p, size_t len, bool allow_nl)
{
  /* c2sp.org/signed-note: valid UTF-8 without ASCII controls below U+0020
   * other than newline.  DEL (U+007F) and C1 controls are allowed. */
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t l = utf8_next(p + i, len - i, &cp);
    if (!l)
      return false;
    if (cp < 0x20 && !(allow_nl && cp == '\n'))
      return false;
    i += l;
  }
  return true;
}

bool kh_utf8_printable(const uint8_t *p, size_t len)
{
  return kh_utf8_ok(p, len, false) && !memchr(p, 0x7f, len);
}

/* Unicode White_Space code points (what Go's unicode.IsSpace accepts). */
static bool is_space(uint32_t cp)
{
  switch (cp) {
  case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
  case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f:
  case 0x205f: case 0x3000:
    return true;
  default:
    return cp >= 0x2000 && cp <= 0x200a;
  }
}

bool kh_note_name_ok(const char *name, size_t len)
{
  const uint8_t *p = (const uint8_t *)name;
  if (len == 0 || len > NAME_MAX_LEN)
    return false;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t l = utf8_next(p + i, len - i, &cp);
    if (!l || cp == '+' || is_space(cp) || cp < 0x20)
      return false;
    i += l;
  }
  return true;
}

bool kh_note_text_ok(const uint8_t *p, size_t len)
{
  return len > 0 && p[len - 1] == '\n' && kh_utf8_ok(p, len, true);
}

uint32_t kh_note_key_hash(const char *name, size_t nlen, int alg, const uint8_t *key,
                          size_t klen)
{
  crypto_hash_sha256_state st;
  uint8_t h[32], a = (uint8_t)alg;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const uint8_t *)name, nlen);
  crypto_hash_sha256_update(&st, (const uint8_t *)"\n", 1);
  crypto_hash_sha256_update(&st, &a, 1);
  crypto_hash_sha256_update(&st, key, klen);
  crypto_hash_sha256_final(&st, h);
  return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

static bool alg_ok(int alg) { return alg == KH_NOTE_ALG_ED25519 || alg == KH_NOTE_ALG_COSIG_V1; }

/* Split "name+hash+b64" into its parts; checks the name and the hash syntax. */
static kh_err split_key(const char *s, size_t *nlen, uint32_t *hash, const char **b64)
{
  const char *p1 = strchr(s, '+');
  if (!p1)
    return kh_seterr(KH_ERR_FORMAT, "malformed key: no '+'");
  const char *p2 = strchr(p1 + 1, '+');
  if (!p2 || p2 - p1 - 1 != 8)
    return kh_seterr(KH_ERR_FORMAT, "malformed key: key hash must be 8 hex digits");
  *nlen = (size_t)(p1 - s);
  if (!kh_note_name_ok(s, *nlen))
    return kh_seterr(KH_ERR_FORMAT, "malformed key: bad key name");
  uint8_t hb[4];
  for (int i = 0; i < 8; i++) { /* lowercase only, as Go formats it */
    char c = p1[1 + i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return kh_seterr(KH_ERR_FORMAT, "malformed key: key hash must be lowercase hex");
  }
  if (kh_hex_decode(hb, 4, p1 + 1, 8))
    return kh_seterr(KH_ERR_FORMAT, "malformed key: bad key hash");
  *hash = (uint32_t)hb[0] << 24 | (uint32_t)hb[1] << 16 | (uint32_t)hb[2] << 8 | hb[3];
  *b64 = p2 + 1;
  return KH_OK;
}

kh_err kh_note_verifier_new(const char *vkey, kh_note_verifier **out)
{
  kh_err e = KH_OK;
  kh_note_verifier *v = NULL;
  size_t nlen, klen = 0;
  uint32_t hash;
  const char *b64;
  uint8_t key[34];
  *out = NULL;
  if (!vkey || strlen(vkey) > 1024)
    return kh_seterr(KH_ERR_FORMAT, "malformed verifier key");
  if ((e = split_key(vkey, &nlen, &hash, &b64)))
    goto out;
  if (kh_b64_decode(key, sizeof key, &klen, b64, strlen(b64)) || klen != 33) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed verifier key: key must be 33 bytes of base64");
    goto out;
  }
  if (!alg_ok(key[0])) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "verifier key algorithm 0x%02x is not supported", key[0]);
    goto out;
  }
  if (kh_note_key_hash(vkey, nlen, key[0], key + 1, 32) != hash) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed verifier key: key hash does not match");
    goto out;
  }
  v = calloc(1, sizeof *v);
  if (!v || !(v->name = strndup(vkey, nlen))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  v->hash = hash;
  v->alg = key[0];
  memcpy(v->pk, key + 1, 32);
  *out = v;
  v = NULL;
out:
  kh_note_verifier_free(v);
  return e;
}

void kh_note_verifier_free(kh_note_verifier *v)
{
  if (!v)
    return;
  free(v->name);
  free(v);
}

const char *kh_note_verifier_name(const kh_note_verifier *v) { return v->name; }
uint32_t kh_note_verifier_hash(const kh_note_verifier *v) { return v->hash; }
int kh_note_verifier_alg(const kh_note_verifier *v) { return v->alg; }

kh_err kh_note_signer_new(const char *skey, kh_note_signer **out)
{
  kh_err e = KH_OK;
  kh_note_signer *s = NULL;
  uint8_t *key = NULL;
  size_t nlen, klen = 0;
  uint32_t hash;
  const char *b64, *rest;
  *out = NULL;
  if ((e = kh_crypto_init()))
    return e;
  if (!skey || strncmp(skey, PRIVATE_PREFIX, strlen(PRIVATE_PREFIX)) != 0 ||
      strlen(skey) > 1024)
    return kh_seterr(KH_ERR_FORMAT, "malformed signer key: no PRIVATE+KEY+ prefix");
  rest = skey + strlen(PRIVATE_PREFIX);
  if ((e = split_key(rest, &nlen, &hash, &b64)))
    goto out;
  if (!(key = kh_secure_alloc(40))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
    goto out;
  }
  if (kh_b64_decode(key, 40, &klen, b64, strlen(b64)) || klen != 33) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed signer key: key must be 33 bytes of base64");
    goto out;
  }
  if (!alg_ok(key[0])) {
    e = kh_seterr(KH_ERR_UNSUPPORTED, "signer key algorithm 0x%02x is not supported", key[0]);
    goto out;
  }
  if (!(s = calloc(1, sizeof *s)) || !(s->name = strndup(rest, nlen)) ||
      !(s->sk = kh_secure_alloc(crypto_sign_SECRETKEYBYTES))) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  s->alg = key[0];
  crypto_sign_seed_keypair(s->pk, s->sk, key + 1);
  s->hash = kh_note_key_hash(s->name, nlen, s->alg, s->pk, 32);
  if (s->hash != hash) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed signer key: key hash does not match");
    goto out;
  }
  *out = s;
  s = NULL;
out:
  kh_secure_free(key);
  kh_note_signer_free(s);
  return e;
}

void kh_note_signer_free(kh_note_signer *s)
{
  if (!s)
    return;
  kh_secure_free(s->sk);
  free(s->name);
  free(s);
}

const char *kh_note_signer_name(const kh_note_signer *s) { return s->name; }

static kh_err format_key(char **out, const char *prefix, const char *name, uint32_t hash,
                         int alg, const uint8_t key[32], bool secret)
{
  uint8_t raw[33];
  char b64[64];
  raw[0] = (uint8_t)alg;
  memcpy(raw + 1, key, 32);
  kh_b64_encode(b64, raw, 33);
  size_t n = strlen(prefix) + strlen(name) + 1 + 8 + 1 + strlen(b64) + 1;
  char *p = secret ? (char *)kh_secure_alloc(n) : malloc(n);
  sodium_memzero(raw, sizeof raw);
  if (!p) {
    sodium_memzero(b64, sizeof b64);
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  }
  snprintf(p, n, "%s%s+%08x+%s", prefix, name, hash, b64);
  sodium_memzero(b64, sizeof b64);
  *out = p;
  return KH_OK;
}

kh_err kh_note_signer_vkey(const kh_note_signer *s, char **vkey)
{
  return format_key(vkey, "", s->name, s->hash, s->alg, s->pk, false);
}

kh_err kh_note_keygen(const char *name, int alg, kh_secret **skey, char **vkey)
{
  kh_err e;
  uint8_t pk[32], *sk = NULL;
  char *sstr = NULL;
  *skey = NULL;
  *vkey = NULL;
  if ((e = kh_crypto_init()))
    return e;
  if (!name || !kh_note_name_ok(name, strlen(name)))
    return kh_seterr(KH_ERR_INVAL, "bad key name (empty, whitespace or '+')");
  if (!alg_ok(alg))
    return kh_seterr(KH_ERR_UNSUPPORTED, "key algorithm %d", alg);
  if (!(sk = kh_secure_alloc(crypto_sign_SECRETKEYBYTES)))
    return kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  crypto_sign_keypair(pk, sk);
  uint32_t hash = kh_note_key_hash(name, strlen(name), alg, pk, 32);
  if ((e = format_key(&sstr, PRIVATE_PREFIX, name, hash, alg, sk, true)))
    goto out; /* sk starts with the 32-byte seed */
  if ((e = format_key(vkey, "", name, hash, alg, pk, false)))
    goto out;
  if (!(*skey = kh_secret_new(sstr, strlen(sstr)))) {
    free(*vkey);
    *vkey = NULL;
    e = kh_seterr(KH_ERR_NOMEM, "out of secure memory");
  }
out:
  kh_secure_free(sstr);
  kh_secure_free(sk);
  return e;
}

/* "— name base64(hash || blob)\n" */
static kh_err sig_line(kh_buf *b, const char *name, uint32_t hash, const uint8_t *blob,
                       size_t blen)
{
  uint8_t raw[4 + 8 + 64];
  char b64[sizeof raw * 2];
  raw[0] = (uint8_t)(hash >> 24);
  raw[1] = (uint8_t)(hash >> 16);
  raw[2] = (uint8_t)(hash >> 8);
  raw[3] = (uint8_t)hash;
  memcpy(raw + 4, blob, blen);
  kh_b64_encode(b64, raw, 4 + blen);
  return kh_buf_printf(b, "%s%s %s\n", SIG_PREFIX, name, b64);
}

kh_err kh_note_sign(const char *text, size_t len, const kh_note_signer *s, char **out,
                    size_t *outlen)
{
  kh_err e;
  kh_buf b;
  uint8_t sig[64];
  *out = NULL;
  *outlen = 0;
  kh_buf_init(&b, KH_NOTE_MAX + 1);
  if (s->alg != KH_NOTE_ALG_ED25519)
    return kh_seterr(KH_ERR_INVAL, "key %s is not a note signing key", s->name);
  if (len > KH_NOTE_MAX - 512)
    return kh_seterr(KH_ERR_TOOBIG, "note text too large");
  if (!kh_note_text_ok((const uint8_t *)text, len))
    return kh_seterr(KH_ERR_FORMAT, "malformed note text");
  crypto_sign_detached(sig, NULL, (const uint8_t *)text, len, s->sk);
  if ((e = kh_buf_append(&b, text, len)) || (e = kh_buf_put_u8(&b, '\n')) ||
      (e = sig_line(&b, s->name, s->hash, sig, 64)) || (e = kh_buf_put_u8(&b, 0)))
    goto out;
  *outlen = b.len - 1;
  *out = (char *)kh_buf_detach(&b, NULL);
out:
  kh_buf_release(&b);
  return e;
}

static kh_err cosig_message(kh_buf *m, const void *text, size_t len, uint64_t t)
{
  kh_err e = kh_buf_printf(m, "cosignature/v1\ntime %llu\n", (unsigned long long)t);
  return e ? e : kh_buf_append(m, text, len);
}

kh_err kh_cosig_sign(const char *text, size_t len, const kh_note_signer *s, uint64_t t,
                     char **line)
{
  kh_err e;
  kh_buf m, b;
  uint8_t blob[8 + 64];
  *line = NULL;
  kh_buf_init(&m, KH_NOTE_MAX + 64);
  kh_buf_init(&b, 512);
  if (s->alg != KH_NOTE_ALG_COSIG_V1) {
    e = kh_seterr(KH_ERR_INVAL, "key %s is not a cosigner (0x04) key", s->name);
    goto out;
  }
  if (t > INT64_MAX) {
    e = kh_seterr(KH_ERR_INVAL, "cosignature timestamp too large");
    goto out;
  }
  if (!kh_note_text_ok((const uint8_t *)text, len)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed checkpoint text");
    goto out;
  }
  if ((e = cosig_message(&m, text, len, t)))
    goto out;
  kh_be64_put(blob, t);
  crypto_sign_detached(blob + 8, NULL, m.data, m.len, s->sk);
  if ((e = sig_line(&b, s->name, s->hash, blob, sizeof blob)) || (e = kh_buf_put_u8(&b, 0)))
    goto out;
  *line = (char *)kh_buf_detach(&b, NULL);
out:
  kh_buf_release(&m);
  kh_buf_release(&b);
  return e;
}

static const uint8_t *find_last_blank(const uint8_t *p, size_t len)
{
  if (len < 2)
    return NULL;
  for (size_t i = len - 1; i > 0; i--)
    if (p[i] == '\n' && p[i - 1] == '\n')
      return p + i - 1;
  return NULL;
}

static kh_err verify_one(const kh_note_verifier *v, const uint8_t *text, size_t tlen,
                         const uint8_t *sig, size_t slen, uint64_t *t)
{
  kh_err e = KH_OK;
  kh_buf m;
  kh_buf_init(&m, KH_NOTE_MAX + 64);
  if (v->alg == KH_NOTE_ALG_ED25519) {
    if (slen != 64 || crypto_sign_verify_detached(sig, text, tlen, v->pk) != 0)
      e = KH_ERR_INVALID_PROOF;
  } else {
    if (slen != 72) {
      e = KH_ERR_INVALID_PROOF;
      goto out;
    }
    /* c2sp.org/tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
     * Such a line is a bad signature by a known key, never a pass. */
    uint64_t ts = kh_be64_get(sig);
    if (ts > INT64_MAX) {
      e = KH_ERR_INVALID_PROOF;
      goto out;
    }
    if ((e = cosig_message(&m, text, tlen, ts)))
      goto out;
    if (crypto_sign_verify_detached(sig + 8, m.data, m.len, v->pk) != 0) {
      e = KH_ERR_INVALID_PROOF;
      goto out;
    }
    *t = ts;
  }
out:
  kh_buf_release(&m);
  if (e == KH_ERR_INVALID_PROOF)
    kh_seterr(e, "invalid signature for key %s+%08x", v->name, v->hash);
  return e;
}

kh_err kh_note_open(const void *msg, size_t len, kh_note_verifier *const *known,
                    size_t nknown, kh_note_info *info, bool *verified, uint64_t *times)
{
  const uint8_t *p = msg;
  kh_note_info inf = {0};
  bool seen[64] = {false};
  uint8_t *raw = NULL;
  kh_err e = KH_OK;
  if (verified)
    memset(verified, 0, nknown * sizeof *verified);
  if (times)
    memset(times, 0, nknown * sizeof *times);
  if (info)
    *info = inf;
  if (len > KH_NOTE_MAX)
    return kh_seterr(KH_ERR_TOOBIG, "note larger than %u bytes", KH_NOTE_MAX);
  if (nknown > 64)
    return kh_seterr(KH_ERR_INVAL, "at most 64 verifier keys");
  /* scratch for decoded signatures: unknown keys may use long ones */
  if (!(raw = malloc(len / 4 * 3 + 8)))
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if (!kh_utf8_ok(p, len, true)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed note: invalid UTF-8 or control characters");
    goto out;
  }
  const uint8_t *split = find_last_blank(p, len);
  if (!split) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed note: no blank line before signatures");
    goto out;
  }
  inf.text_len = (size_t)(split - p) + 1;
  const uint8_t *s = split + 2, *end = p + len;
  inf.sigs_len = (size_t)(end - s);
  if (s == end || end[-1] != '\n') {
    e = kh_seterr(KH_ERR_FORMAT, "malformed note: no signature lines");
    goto out;
  }
  unsigned nsig = 0;
  while (s < end) {
    const uint8_t *nl = memchr(s, '\n', (size_t)(end - s));
    const uint8_t *line = s;
    size_t llen = (size_t)(nl - s);
    s = nl + 1;
    if (++nsig > KH_NOTE_SIGS_MAX) {
      e = kh_seterr(KH_ERR_FORMAT, "malformed note: more than %d signatures",
                     KH_NOTE_SIGS_MAX);
      goto out;
    }
    if (llen < SIG_PREFIX_LEN || memcmp(line, SIG_PREFIX, SIG_PREFIX_LEN) != 0) {
      e = kh_seterr(KH_ERR_FORMAT, "malformed note: signature line without em dash");
      goto out;
    }
    line += SIG_PREFIX_LEN;
    llen -= SIG_PREFIX_LEN;
    const uint8_t *sp = memchr(line, ' ', llen);
    if (!sp) {
      e = kh_seterr(KH_ERR_FORMAT, "malformed note: signature line without key name");
      goto out;
    }
    size_t nlen = (size_t)(sp - line), blen = llen - nlen - 1, rlen = 0;
    if (!kh_note_name_ok((const char *)line, nlen) || blen == 0 ||
        kh_b64_decode(raw, len / 4 * 3 + 8, &rlen, (const char *)sp + 1, blen) || rlen < 5) {
      e = kh_seterr(KH_ERR_FORMAT, "malformed note: bad signature line");
      goto out;
    }
    uint32_t hash = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 |
                    (uint32_t)raw[2] << 8 | raw[3];
    size_t k;
    for (k = 0; k < nknown; k++)
      if (known[k]->hash == hash && strlen(known[k]->name) == nlen &&
          memcmp(known[k]->name, line, nlen) == 0)
        break;
    if (k == nknown) {
      inf.nunknown++;
      continue;
    }
    if (seen[k])
      continue; /* repeated signature by one key: checked once (as Go does) */
    seen[k] = true;
    uint64_t t = 0;
    if ((e = verify_one(known[k], p, inf.text_len, raw + 4, rlen - 4, &t)))
      goto out;
    inf.nverified++;
    if (verified)
      verified[k] = true;
    if (times)
      times[k] = t;
  }
  if (info)
    *info = inf;
  if (inf.nverified == 0)
    e = kh_seterr(KH_ERR_INVALID_PROOF, "note has no signature by a known key");
out:
  free(raw);
  return e;
}
