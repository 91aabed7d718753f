/* Checkpoints (c2sp.org/tlog-checkpoint v1.0.0; docs/log.md §3.2). */
#include "log/log_internal.h"
#include "common/err.h"
#include "common/hex.h"

#include <stdlib.h>
#include <string.h>

static const char *line_end(const char *p, const char *end)
{
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  return nl;
}

/* Decimal without sign or leading zeros ("0" itself is fine), fits 64 bits. */
static bool parse_u64(const char *p, size_t n, uint64_t *v)
{
  uint64_t x = 0;
  if (n == 0 || n > 20 || (n > 1 && p[0] == '0'))
    return false;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return false;
    unsigned d = (unsigned)(p[i] - '0');
    if (x > (UINT64_MAX - d) / 10)
      return false;
    x = x * 10 + d;
  }
  *v = x;
  return true;
}

kh_err kh_checkpoint_parse(const void *text, size_t len, kh_checkpoint *c)
{
  const char *p = text, *end = p + len, *nl;
  memset(c, 0, sizeof *c);
  if (len > KH_NOTE_MAX)
    return kh_seterr(KH_ERR_TOOBIG, "checkpoint too large");
  if (!kh_note_text_ok(text, len))
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: not newline-terminated UTF-8 text");
  /* origin */
  nl = line_end(p, end);
  size_t olen = (size_t)(nl - p);
  if (olen == 0 || olen > KH_CHECKPOINT_ORIGIN_MAX)
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: origin line empty or longer than %d bytes",
                     KH_CHECKPOINT_ORIGIN_MAX);
  memcpy(c->origin, p, olen);
  c->origin[olen] = '\0';
  p = nl + 1;
  /* tree size */
  if (p == end || !(nl = line_end(p, end)) || !parse_u64(p, (size_t)(nl - p), &c->size))
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: bad tree size line");
  p = nl + 1;
  /* root hash: canonical base64 of exactly 32 bytes */
  char enc[64];
  size_t rlen = 0;
  if (p == end || !(nl = line_end(p, end)) || nl - p != 44 ||
      kh_b64_decode(c->root, sizeof c->root, &rlen, p, 44) || rlen != 32)
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: bad root hash line");
  kh_b64_encode(enc, c->root, 32);
  if (memcmp(enc, p, 44) != 0)
    return kh_seterr(KH_ERR_FORMAT, "checkpoint: root hash is not canonical base64");
  p = nl + 1;
  /* extension lines: each non-empty */
  if (p < end) {
    c->ext = p;
    c->ext_len = (size_t)(end - p);
    while (p < end) {
      nl = line_end(p, end);
      if (nl == p)
        return kh_seterr(KH_ERR_FORMAT, "checkpoint: empty extension line");
      p = nl + 1;
    }
  }
  return KH_OK;
}

kh_err kh_checkpoint_format(const kh_checkpoint *c, char **out, size_t *len)
{
  kh_err e;
  kh_buf b;
  char enc[64];
  kh_checkpoint chk;
  *out = NULL;
  *len = 0;
  kh_buf_init(&b, KH_NOTE_MAX);
  kh_b64_encode(enc, c->root, 32);
  if ((e = kh_buf_printf(&b, "%s\n%llu\n%s\n", c->origin, (unsigned long long)c->size, enc)) ||
      (c->ext_len && (e = kh_buf_append(&b, c->ext, c->ext_len))))
    goto out;
  /* what we write must parse back (rejects bad origins and extensions) */
  if ((e = kh_checkpoint_parse(b.data, b.len, &chk)))
    goto out;
  if ((e = kh_buf_put_u8(&b, 0)))
    goto out;
  *len = b.len - 1;
  *out = (char *)kh_buf_detach(&b, NULL);
out:
  kh_buf_release(&b);
  return e;
}

kh_err kh_checkpoint_open(const void *msg, size_t len, const kh_note_verifier *v,
                          kh_checkpoint *c, size_t *text_len)
{
  kh_note_info info;
  kh_note_verifier *list[1] = {(kh_note_verifier *)v};
  kh_err e;
  memset(c, 0, sizeof *c);
  if (v->alg != KH_NOTE_ALG_ED25519)
    return kh_seterr(KH_ERR_INVAL, "checkpoint key %s is not a log (0x01) key", v->name);
  if ((e = kh_note_open(msg, len, list, 1, &info, NULL, NULL)))
    return e;
  if ((e = kh_checkpoint_parse(msg, info.text_len, c)))
    return e;
  if (text_len)
    *text_len = info.text_len;
  return KH_OK;
}
