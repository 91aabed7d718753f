/* Challenges, sessions, the signed-request check and rate limits
 * (docs/protocol.md §7, §11).
 *
 * Challenges are stateless: 8 bytes of time, 8 random, 16 of a MAC under a
 * key made at start; the server remembers only the spent ones until they
 * expire.  Sessions live in memory (a restart ends them all).  A session
 * token is 24 random bytes and an 8-byte MAC under DIR/server/session.key,
 * so that a token this region issued once (expired, ended, or from before a
 * restart) is told apart from one it never issued: session_expired versus
 * no_session. */
#include "keyholdd.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 4096
#define SPENT_MAX 200000   /* spent challenges remembered (20/min/address bounds it) */
#define LIMITER_SLOTS 8192

typedef struct session {
  struct session *next;     /* hash chain */
  uint8_t token[32];
  char account[KH_META_ID_HEX + 1];
  char device[KH_META_ID_HEX + 1];
  int64_t created, expires;
  uint64_t serial;          /* order of creation (the oldest ends first) */
  pthread_mutex_t lock;     /* the window */
  kh_proto_window window;
  unsigned refs;            /* requests using it; freed at 0 once unlinked */
  bool dead;
} session;

typedef struct spent {
  struct spent *next;
  uint8_t c[32];
  int64_t expires;
} spent;

struct kd_sessions {
  pthread_mutex_t lock;
  session *b[NBUCKETS];
  uint64_t serial;
  uint8_t token_key[32];    /* session-token MACs */
  uint8_t chal_key[32];     /* challenge MACs (per run) */
  uint8_t hash_key[crypto_shorthash_KEYBYTES];
  spent *sp[NBUCKETS];
  size_t nspent;
};

typedef struct bucket_slot {
  char key[64];
  double tokens, last;
} bucket_slot;

struct kd_limiter {
  pthread_mutex_t lock;
  double rate, burst;       /* tokens per second, most tokens */
  bucket_slot slot[LIMITER_SLOTS];
  uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

static double mono(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t hidx(const uint8_t *key, const void *p, size_t n, size_t mod)
{
  uint8_t h[crypto_shorthash_BYTES];
  uint64_t v;
  crypto_shorthash(h, p, n, key);
  memcpy(&v, h, sizeof v);
  return (size_t)(v % mod);
}

/* ---- rate limits ------------------------------------------------------------ */

static kd_limiter *limiter_new(double rate, double burst)
{
  kd_limiter *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  pthread_mutex_init(&l->lock, NULL);
  l->rate = rate;
  l->burst = burst;
  crypto_shorthash_keygen(l->hash_key);
  return l;
}

static void limiter_free(kd_limiter *l)
{
  if (!l)
    return;
  pthread_mutex_destroy(&l->lock);
  free(l);
}

/* Take one token for key: 0 if allowed, else seconds until one is there.
 * Keys share slots by hash; a slot taken over by another key starts full
 * (an evicted key is never refused for another's use). */
static double limiter_take(kd_limiter *l, const char *key)
{
  double now = mono(), wait = 0;
  size_t i = hidx(l->hash_key, key, strlen(key), LIMITER_SLOTS);
  pthread_mutex_lock(&l->lock);
  bucket_slot *b = &l->slot[i];
  if (strncmp(b->key, key, sizeof b->key) != 0) {
    snprintf(b->key, sizeof b->key, "%s", key);
    b->tokens = l->burst;
    b->last = now;
  }
  b->tokens += (now - b->last) * l->rate;
  if (b->tokens > l->burst)
    b->tokens = l->burst;
  b->last = now;
  if (b->tokens >= 1)
    b->tokens -= 1;
  else
    wait = (1 - b->tokens) / l->rate;
  pthread_mutex_unlock(&l->lock);
  return wait;
}

static void rate_limited(kd_response *rs, double wait, const char *who)
{
  char v[32], msg[96];
  long secs = (long)wait + ((double)(long)wait < wait); /* rounded up, at least 1 */
  snprintf(v, sizeof v, "%ld", secs < 1 ? 1 : secs);
  snprintf(msg, sizeof msg, "too many requests from this %s", who);
  kd_error(rs, 429, "rate_limited", msg);
  kd_header_add(rs, "Retry-After", v);
}

bool kd_rate_addr(kd_server *s, const char *remote, kd_response *rs)
{
  double w = limiter_take(s->addr_limit, remote);
  if (w > 0) {
    rate_limited(rs, w, "address");
    return false;
  }
  return true;
}

/* ---- setup ---------------------------------------------------------------- */

/* DIR/server/session.key: 32 random bytes, made once (mode 0600). */
static kh_err token_key(kd_server *s, uint8_t key[32])
{
  size_t n = strlen(s->dir) + 32;
  char *p = malloc(n);
  kh_err e = KH_OK;
  int fd = -1;
  if (!p)
    return KH_ERR_NOMEM;
  snprintf(p, n, "%s/server/session.key", s->dir);
  if ((fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
    if (read(fd, key, 32) != 32)
      e = KH_ERR_FORMAT;
  } else if (errno == ENOENT) {
    randombytes_buf(key, 32);
    char *tmp = malloc(n + 8);
    if (!tmp) {
      e = KH_ERR_NOMEM;
      goto out;
    }
    snprintf(tmp, n + 8, "%s.new", p);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0 ||
        write(fd, key, 32) != 32 || fsync(fd) != 0 || rename(tmp, p) != 0)
      e = KH_ERR_IO;
    free(tmp);
  } else {
    e = KH_ERR_IO;
  }
out:
  if (fd >= 0)
    close(fd);
  free(p);
  return e;
}

kh_err kd_auth_init(kd_server *s)
{
  kd_sessions *ss = calloc(1, sizeof *ss);
  kh_err e;
  if (!ss)
    return KH_ERR_NOMEM;
  pthread_mutex_init(&ss->lock, NULL);
  crypto_auth_keygen(ss->chal_key);
  crypto_shorthash_keygen(ss->hash_key);
  s->sessions = ss;
  if ((e = token_key(s, ss->token_key)))
    return e;
  double dr = s->device_rate ? s->device_rate : KD_DEVICE_RATE;
  double ar = s->addr_rate ? s->addr_rate : KD_ADDR_RATE;
  s->dev_limit = limiter_new(dr, 2 * dr);
  s->addr_limit = limiter_new(ar / 60.0, ar);
  return s->dev_limit && s->addr_limit ? KH_OK : KH_ERR_NOMEM;
}

static void session_unref(session *x)
{
  if (--x->refs == 0 && x->dead) {
    pthread_mutex_destroy(&x->lock);
    sodium_memzero(x->token, sizeof x->token);
    free(x);
  }
}

void kd_auth_free(kd_server *s)
{
  kd_sessions *ss = s->sessions;
  if (ss) {
    for (size_t i = 0; i < NBUCKETS; i++) {
      for (session *x = ss->b[i], *n; x; x = n) {
        n = x->next;
        pthread_mutex_destroy(&x->lock);
        free(x);
      }
      for (spent *x = ss->sp[i], *n; x; x = n) {
        n = x->next;
        free(x);
      }
    }
    pthread_mutex_destroy(&ss->lock);
    sodium_memzero(ss, sizeof *ss);
    free(ss);
  }
  limiter_free(s->dev_limit);
  limiter_free(s->addr_limit);
  s->sessions = NULL;
}

/* ---- challenges (§7.1) -------------------------------------------------------- */

void kd_challenge_new(kd_server *s, char out[45], int64_t *expires)
{
  uint8_t c[32], mac[crypto_auth_BYTES];
  uint64_t t = (uint64_t)time(NULL);
  for (int i = 0; i < 8; i++)
    c[i] = (uint8_t)(t >> (56 - 8 * i));
  randombytes_buf(c + 8, 8);
  crypto_auth(mac, c, 16, s->sessions->chal_key);
  memcpy(c + 16, mac, 16);
  kh_proto_b64(c, 32, out);
  *expires = (int64_t)t + KD_CHALLENGE_TTL;
}

bool kd_challenge_spend(kd_server *s, const char *b64)
{
  kd_sessions *ss = s->sessions;
  uint8_t c[32], mac[crypto_auth_BYTES];
  if (!b64 || kh_proto_unb64(b64, c, 32) != KH_OK)
    return false;
  crypto_auth(mac, c, 16, ss->chal_key);
  if (sodium_memcmp(mac, c + 16, 16) != 0)
    return false;
  uint64_t t = 0;
  for (int i = 0; i < 8; i++)
    t = (t << 8) | c[i];
  int64_t now = (int64_t)time(NULL);
  if ((int64_t)t > now + 5 || (int64_t)t + KD_CHALLENGE_TTL < now)
    return false;
  bool ok = true;
  size_t i = hidx(ss->hash_key, c, 32, NBUCKETS);
  pthread_mutex_lock(&ss->lock);
  spent **pp = &ss->sp[i];
  while (*pp) {
    spent *x = *pp;
    if (x->expires < now) { /* forget the expired ones on the way */
      *pp = x->next;
      free(x);
      ss->nspent--;
      continue;
    }
    if (memcmp(x->c, c, 32) == 0)
      ok = false;
    pp = &x->next;
  }
  spent *n = ok && ss->nspent < SPENT_MAX ? malloc(sizeof *n) : NULL;
  if (ok && !n)
    ok = false; /* cannot remember it: refuse rather than allow a second use */
  if (n) {
    memcpy(n->c, c, 32);
    n->expires = (int64_t)t + KD_CHALLENGE_TTL;
    n->next = ss->sp[i];
    ss->sp[i] = n;
    ss->nspent++;
  }
  pthread_mutex_unlock(&ss->lock);
  return ok;
}

/* ---- sessions (§7.3) ------------------------------------------------------------ */

static void token_mac(const kd_sessions *ss, const uint8_t r[24], uint8_t mac[8])
{
  uint8_t full[crypto_auth_BYTES];
  crypto_auth(full, r, 24, ss->token_key);
  memcpy(mac, full, 8);
}

/* Unlink x (lock held). */
static void session_kill(kd_sessions *ss, session **pp)
{
  session *x = *pp;
  *pp = x->next;
  x->dead = true;
  x->refs++;
  session_unref(x);
}

kh_err kd_session_open(kd_server *s, const kh_meta_device *d, char out[44], int64_t *expires)
{
  kd_sessions *ss = s->sessions;
  session *x = calloc(1, sizeof *x);
  if (!x)
    return KH_ERR_NOMEM;
  randombytes_buf(x->token, 24);
  token_mac(ss, x->token, x->token + 24);
  memcpy(x->account, d->account, sizeof x->account);
  memcpy(x->device, d->id, sizeof x->device);
  x->created = (int64_t)time(NULL);
  x->expires = x->created + (s->session_ttl ? s->session_ttl : KD_SESSION_TTL);
  pthread_mutex_init(&x->lock, NULL);
  sodium_bin2base64(out, 44, x->token, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  *expires = x->expires;
  size_t i = hidx(ss->hash_key, x->token, 32, NBUCKETS);
  pthread_mutex_lock(&ss->lock);
  x->serial = ++ss->serial;
  /* at most KD_SESSIONS_PER_DEVICE: the oldest of the device ends */
  for (;;) {
    unsigned n = 0;
    session **oldest = NULL;
    for (size_t b = 0; b < NBUCKETS; b++)
      for (session **pp = &ss->b[b]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->device, d->id) == 0) {
          n++;
          if (!oldest || (*pp)->serial < (*oldest)->serial)
            oldest = pp;
        }
    if (n < KD_SESSIONS_PER_DEVICE || !oldest)
      break;
    session_kill(ss, oldest);
  }
  x->next = ss->b[i];
  ss->b[i] = x;
  pthread_mutex_unlock(&ss->lock);
  return KH_OK;
}

void kd_sessions_end_device(kd_server *s, const char *device)
{
  kd_sessions *ss = s->sessions;
  pthread_mutex_lock(&ss->lock);
  for (size_t b = 0; b < NBUCKETS; b++)
    for (session **pp = &ss->b[b]; *pp;) {
      if (strcmp((*pp)->device, device) == 0)
        session_kill(ss, pp);
      else
        pp = &(*pp)->next;
    }
  pthread_mutex_unlock(&ss->lock);
}

/* The session of a token header: a referenced live session, or NULL with
 * rs filled (no_session / session_expired). */
static session *session_find(kd_server *s, const char *tok, kd_response *rs)
{
  kd_sessions *ss = s->sessions;
  uint8_t t[32], mac[8];
  size_t bl = 0;
  const char *end = NULL;
  if (!tok || strlen(tok) != 43 ||
      sodium_base642bin(t, sizeof t, tok, 43, NULL, &bl, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || bl != 32 ||
      end != tok + 43) {
    kd_error(rs, 401, "no_session", "no session: open one (POST /v1/session)");
    return NULL;
  }
  token_mac(ss, t, mac);
  if (sodium_memcmp(mac, t + 24, 8) != 0) {
    kd_error(rs, 401, "no_session", "unknown session");
    return NULL;
  }
  session *found = NULL;
  int64_t now = (int64_t)time(NULL);
  size_t i = hidx(ss->hash_key, t, 32, NBUCKETS);
  pthread_mutex_lock(&ss->lock);
  for (session **pp = &ss->b[i]; *pp; pp = &(*pp)->next) {
    if (sodium_memcmp((*pp)->token, t, 32) != 0)
      continue;
    if ((*pp)->expires <= now) {
      session_kill(ss, pp);
    } else {
      found = *pp;
      found->refs++;
    }
    break;
  }
  pthread_mutex_unlock(&ss->lock);
  if (!found)
    kd_error(rs, 401, "session_expired", "the session is over: open a new one");
  return found;
}

static void session_release(kd_server *s, session *x)
{
  pthread_mutex_lock(&s->sessions->lock);
  session_unref(x);
  pthread_mutex_unlock(&s->sessions->lock);
}

/* ---- the signed-request check (§7.4) -------------------------------------------- */

bool kd_auth_check(kd_server *s, const kd_request *rq, kd_caller *who, kd_response *rs)
{
  session *x = NULL;
  kh_meta_device d;
  char *canon = NULL;
  size_t clen = 0;
  uint64_t seq = 0;
  uint8_t sig[64];
  bool ok = false;
  memset(who, 0, sizeof *who);
  /* 1. the session exists and has not expired */
  const char *tok = kd_header(rq, "KH-Session");
  if (!(x = session_find(s, tok, rs)))
    goto out;
  /* 2. the device is not revoked (its row now, also for caps) */
  kh_err e = kh_meta_device_get(s->meta, x->device, &d);
  if (e || d.revoked || strcmp(d.account, x->account) != 0) {
    if (e && e != KH_ERR_NOTFOUND) {
      kd_error(rs, 500, "internal", "the metadata store failed");
      goto out;
    }
    kd_sessions_end_device(s, x->device);
    kd_error(rs, 403, "revoked", "this device was revoked");
    goto out;
  }
  /* 3. the signature over the canonical request */
  const char *sq = kd_header(rq, "KH-Seq"), *bh = kd_header(rq, "KH-Body-SHA256"),
             *sg = kd_header(rq, "KH-Signature"), *inm = kd_header(rq, "If-None-Match"),
             *rg = kd_header(rq, "Range");
  if (kh_proto_seq_parse(sq, &seq) != KH_OK || !bh || !sg || kh_proto_unb64(sg, sig, sizeof sig) != KH_OK ||
      kh_proto_canonical_request(rq->method_name, rq->target, tok, seq, bh, inm, rg, &canon,
                                 &clen) != KH_OK) {
    kd_error(rs, 400, "bad_request",
             "KH-Seq, KH-Body-SHA256 or KH-Signature missing or malformed");
    goto out;
  }
  if (crypto_sign_verify_detached(sig, (const uint8_t *)canon, clen, d.sign_pk) != 0) {
    kd_error(rs, 401, "bad_signature", "the request signature does not verify");
    goto out;
  }
  /* 4. the device's rate (before the number is spent: a refused request changes nothing) */
  double w = limiter_take(s->dev_limit, d.id);
  if (w > 0) {
    rate_limited(rs, w, "device");
    goto out;
  }
  /* 5. the sequence number, once */
  pthread_mutex_lock(&x->lock);
  e = kh_proto_window_accept(&x->window, seq);
  pthread_mutex_unlock(&x->lock);
  if (e) {
    kd_error(rs, 401, "replay", "sequence number already used or below the window");
    goto out;
  }
  memcpy(who->account, d.account, sizeof who->account);
  memcpy(who->device, d.id, sizeof who->device);
  who->caps = d.caps;
  ok = true;
out:
  if (x)
    session_release(s, x);
  free(canon);
  return ok;
}

bool kd_require(const kd_request *rq, const char *account, unsigned cap, kd_response *rs)
{
  const kd_caller *c = rq->caller;
  if (!c) {
    kd_error(rs, 401, "no_session", "no session");
    return false;
  }
  if (!account || strlen(account) != KH_META_ID_HEX ||
      sodium_memcmp(account, c->account, KH_META_ID_HEX) != 0) {
    kd_error(rs, 403, "wrong_account", "the path names another account than the session's");
    return false;
  }
  if (cap && !(c->caps & cap)) {
    char msg[96];
    snprintf(msg, sizeof msg, "this device lacks the '%s' capability", kh_proto_cap_name(cap));
    kd_error(rs, 403, "missing_capability", msg);
    return false;
  }
  return true;
}
