#include "snapshot/tree.h"
#include "common/err.h"
#include "common/wire.h"
#include "keyhold/vault.h"

#include <stdlib.h>
#include <string.h>

#define TREE_MAGIC "KHTR1"
#define SNAP_MAGIC "KHSN1"
#define SNAP_MAX_PATHS 100000u
#define SNAP_MAX_TAGS 1024u
#define SNAP_MAX_TAG 1024u
/* optional trailing fields, each at most once, in this order */
#define SNAP_FIELD_ORIGINAL 1
#define SNAP_FIELD_TAGS 2
#define SNAP_FIELD_COPY_OF 3
/* docs/format.md §8: a name is one path component, so that restore can
 * never be steered out of the directory that holds it */
#define BAD_NAME "entry name is empty, \".\" or \"..\", or contains '/' or NUL"

int kh_name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c)
    return c;
  return al < bl ? -1 : al > bl;
}

static bool valid_name(const uint8_t *n, size_t l)
{
  if (l == 0 || (l == 1 && n[0] == '.') || (l == 2 && n[0] == '.' && n[1] == '.'))
    return false;
  return memchr(n, '/', l) == NULL && memchr(n, 0, l) == NULL;
}

/* The type byte's high bit: flags and extended attributes follow the
 * node (docs/format.md §8) */
#define TYPE_EXT 0x80

/* Is p[0..len) a list of exactly n extended attributes, names 1..255 bytes
 * without NUL and strictly increasing, values at most 64 KiB? */
static bool xattrs_valid(const uint8_t *p, size_t len, uint64_t n)
{
  kh_rd r;
  kh_rd_init(&r, p, len);
  const uint8_t *prev = NULL;
  size_t prevlen = 0;
  if (n > KH_XATTR_COUNT_MAX)
    return false;
  for (uint64_t i = 0; i < n && kh_rd_ok(&r); i++) {
    size_t nl, vl;
    const uint8_t *name = kh_rd_lbytes(&r, KH_XATTR_NAME_MAX, &nl);
    kh_rd_lbytes(&r, KH_XATTR_VALUE_MAX, &vl);
    if (!kh_rd_ok(&r) || nl == 0 || memchr(name, 0, nl) ||
        (prev && kh_name_cmp(prev, prevlen, name, nl) >= 0))
      return false;
    prev = name;
    prevlen = nl;
  }
  return kh_rd_done(&r);
}

bool kh_xattr_next(const uint8_t *xattrs, size_t len, size_t *off, const uint8_t **name,
                   size_t *namelen, const uint8_t **value, size_t *valuelen)
{
  if (*off >= len)
    return false;
  kh_rd r;
  kh_rd_init(&r, xattrs, len);
  r.off = *off;
  *name = kh_rd_lbytes(&r, KH_XATTR_NAME_MAX, namelen);
  *value = kh_rd_lbytes(&r, KH_XATTR_VALUE_MAX, valuelen);
  if (!kh_rd_ok(&r))
    return false;
  *off = r.off;
  return true;
}

bool kh_xattr_list_count(const uint8_t *p, size_t len, uint32_t *n)
{
  size_t off = 0, nl, vl;
  const uint8_t *nm, *val;
  uint64_t k = 0;
  *n = 0;
  while (k <= KH_XATTR_COUNT_MAX && kh_xattr_next(p, len, &off, &nm, &nl, &val, &vl))
    k++;
  if (off != len || !xattrs_valid(p, len, k))
    return false;
  *n = (uint32_t)k;
  return true;
}

static bool has_ext(const kh_tnode *t)
{
  return t->flags || t->nxattr;
}

kh_err kh_tree_encode(const kh_tnode *nodes, size_t n, kh_buf *out)
{
  kh_buf_reset(out);
  kh_err e = kh_buf_append(out, TREE_MAGIC, 5);
  if (!e) e = kh_buf_put_uvar(out, n);
  for (size_t i = 0; !e && i < n; i++) {
    const kh_tnode *t = &nodes[i];
    if (!valid_name(t->name, t->namelen)) {
      e = kh_seterr(KH_ERR_INVAL, "tree: " BAD_NAME);
      break;
    }
    if (has_ext(t) && ((t->type != KH_NODE_FILE && t->type != KH_NODE_DIR) ||
                       (t->flags & ~KH_FLAGS_ALL) ||
                       !xattrs_valid(t->xattrs, t->xattrlen, t->nxattr))) {
      e = kh_seterr(KH_ERR_INVAL, "tree: invalid flags or extended attributes");
      break;
    }
    e = kh_buf_put_lbytes(out, t->name, t->namelen);
    if (!e) e = kh_buf_put_u8(out, (uint8_t)(t->type | (has_ext(t) ? TYPE_EXT : 0)));
    if (!e) e = kh_buf_put_uvar(out, t->mode);
    if (!e) e = kh_buf_put_uvar(out, t->uid);
    if (!e) e = kh_buf_put_uvar(out, t->gid);
    if (!e) e = kh_buf_put_u64(out, (uint64_t)t->mtime_ns);
    if (!e) e = kh_buf_put_uvar(out, t->size);
    if (!e) e = kh_buf_put_uvar(out, t->nlink);
    if (!e) e = kh_buf_put_uvar(out, t->ino);
    if (!e) e = kh_buf_put_uvar(out, t->dev);
    if (e)
      break;
    switch (t->type) {
    case KH_NODE_FILE:
      e = kh_buf_put_uvar(out, t->nchunks);
      for (size_t c = 0; !e && c < t->nchunks; c++) {
        e = kh_buf_append(out, t->chunks[c].id, 32);
        if (!e) e = kh_buf_put_uvar(out, t->chunks[c].len);
      }
      break;
    case KH_NODE_DIR: e = kh_buf_append(out, t->subtree, 32); break;
    case KH_NODE_SYMLINK: e = kh_buf_put_lbytes(out, t->link, t->linklen); break;
    case KH_NODE_CHARDEV:
    case KH_NODE_BLOCKDEV: e = kh_buf_put_uvar(out, t->rdev); break;
    default: break;
    }
    if (!e && has_ext(t)) {
      e = kh_buf_put_uvar(out, t->flags);
      if (!e) e = kh_buf_put_uvar(out, t->nxattr);
      if (!e) e = kh_buf_append(out, t->xattrs, t->xattrlen);
    }
  }
  return e;
}

kh_err kh_tree_decode(const uint8_t *p, size_t len, kh_tree *t)
{
  memset(t, 0, sizeof *t);
  kh_err e = KH_OK;
  kh_rd r;
  kh_rd_init(&r, p, len);
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  uint64_t n = kh_rd_uvar(&r);
  /* every node takes at least 18 bytes (a fifo with a 1-byte name): bound
   * the count before allocating */
  if (!magic || memcmp(magic, TREE_MAGIC, 5) || n > KH_TREE_MAX_NODES ||
      n > kh_rd_left(&r) / 18)
    return kh_seterr(KH_ERR_FORMAT, "malformed tree");
  t->raw = malloc(len ? len : 1);
  t->nodes = calloc(n ? n : 1, sizeof *t->nodes);
  if (!t->raw || !t->nodes) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  memcpy(t->raw, p, len);
  kh_rd_init(&r, t->raw, len);
  kh_rd_bytes(&r, 5);
  kh_rd_uvar(&r);
  size_t nrefs = 0, refcap = 0;
  bool bad_name = false;
  for (uint64_t i = 0; i < n && kh_rd_ok(&r); i++) {
    kh_tnode *x = &t->nodes[i];
    x->name = kh_rd_lbytes(&r, KH_NAME_MAX, &x->namelen);
    x->type = kh_rd_u8(&r);
    bool ext = x->type & TYPE_EXT;
    x->type &= (uint8_t)~TYPE_EXT;
    uint64_t mode = kh_rd_uvar(&r), uid = kh_rd_uvar(&r), gid = kh_rd_uvar(&r);
    x->mtime_ns = (int64_t)kh_rd_u64(&r);
    x->size = kh_rd_uvar(&r);
    x->nlink = kh_rd_uvar(&r);
    x->ino = kh_rd_uvar(&r);
    x->dev = kh_rd_uvar(&r);
    if (kh_rd_ok(&r) && !valid_name(x->name, x->namelen)) {
      bad_name = true;
      kh_rd_fail(&r);
      break;
    }
    if (!kh_rd_ok(&r) || mode > 07777 ||
        uid > UINT32_MAX || gid > UINT32_MAX || x->type < KH_NODE_FILE ||
        x->type > KH_NODE_SOCKET ||
        (i > 0 && kh_name_cmp(t->nodes[i - 1].name, t->nodes[i - 1].namelen, x->name,
                              x->namelen) >= 0)) {
      kh_rd_fail(&r);
      break;
    }
    x->mode = (uint32_t)mode;
    x->uid = (uint32_t)uid;
    x->gid = (uint32_t)gid;
    switch (x->type) {
    case KH_NODE_FILE: {
      uint64_t nc = kh_rd_uvar(&r), total = 0;
      if (nc > kh_rd_left(&r) / 33) {
        kh_rd_fail(&r);
        break;
      }
      if (nrefs + nc > refcap) {
        size_t ncap = refcap ? refcap : 16;
        while (ncap < nrefs + nc)
          ncap *= 2;
        kh_chunkref *nr = realloc(t->refs, ncap * sizeof *nr);
        if (!nr) {
          e = kh_seterr(KH_ERR_NOMEM, "out of memory");
          goto out;
        }
        t->refs = nr;
        refcap = ncap;
      }
      x->nchunks = (size_t)nc;
      x->chunks = (kh_chunkref *)(uintptr_t)nrefs; /* fixed up below */
      for (uint64_t c = 0; c < nc && kh_rd_ok(&r); c++) {
        kh_rd_copy(&r, t->refs[nrefs].id, 32);
        t->refs[nrefs].len = kh_rd_uvar(&r);
        if (t->refs[nrefs].len > UINT64_MAX - total)
          kh_rd_fail(&r);
        total += t->refs[nrefs].len;
        nrefs++;
      }
      if (total != x->size)
        kh_rd_fail(&r);
      break;
    }
    case KH_NODE_DIR: kh_rd_copy(&r, x->subtree, 32); break;
    case KH_NODE_SYMLINK: x->link = kh_rd_lbytes(&r, KH_NAME_MAX, &x->linklen); break;
    case KH_NODE_CHARDEV:
    case KH_NODE_BLOCKDEV: x->rdev = kh_rd_uvar(&r); break;
    default: break;
    }
    if (ext && kh_rd_ok(&r)) {
      /* flags and extended attributes: only on files and directories, only
       * when there is something (the encoding is canonical) */
      uint64_t flags = kh_rd_uvar(&r), nx = kh_rd_uvar(&r);
      size_t start = r.off;
      for (uint64_t k = 0; k < nx && k <= KH_XATTR_COUNT_MAX && kh_rd_ok(&r); k++) {
        size_t l;
        kh_rd_lbytes(&r, KH_XATTR_NAME_MAX, &l);
        kh_rd_lbytes(&r, KH_XATTR_VALUE_MAX, &l);
      }
      if (!kh_rd_ok(&r) || (x->type != KH_NODE_FILE && x->type != KH_NODE_DIR) ||
          (flags & ~(uint64_t)KH_FLAGS_ALL) || (!flags && !nx) ||
          !xattrs_valid(r.p + start, r.off - start, nx)) {
        kh_rd_fail(&r);
        break;
      }
      x->flags = (uint32_t)flags;
      x->nxattr = (uint32_t)nx;
      x->xattrs = r.p + start;
      x->xattrlen = r.off - start;
    }
  }
  if (bad_name) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed tree: " BAD_NAME);
    goto out;
  }
  if (!kh_rd_done(&r)) {
    e = kh_seterr(KH_ERR_FORMAT, "malformed tree");
    goto out;
  }
  for (uint64_t i = 0; i < n; i++)
    if (t->nodes[i].type == KH_NODE_FILE)
      t->nodes[i].chunks = t->refs ? t->refs + (uintptr_t)t->nodes[i].chunks : NULL;
  t->n = (size_t)n;
out:
  if (e)
    kh_tree_release(t);
  return e;
}

void kh_tree_release(kh_tree *t)
{
  free(t->nodes);
  free(t->raw);
  free(t->refs);
  memset(t, 0, sizeof *t);
}

const kh_tnode *kh_tree_find(const kh_tree *t, const uint8_t *name, size_t len)
{
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = kh_name_cmp(t->nodes[mid].name, t->nodes[mid].namelen, name, len);
    if (c == 0)
      return &t->nodes[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

kh_err kh_snap_encode(const kh_snap *s, kh_buf *out)
{
  kh_buf_reset(out);
  kh_err e = kh_buf_append(out, SNAP_MAGIC, 5);
  if (!e) e = kh_buf_put_u64(out, (uint64_t)s->time_ns);
  if (!e) e = kh_buf_put_str(out, s->host ? s->host : "");
  if (!e) e = kh_buf_put_uvar(out, s->npaths);
  for (size_t i = 0; !e && i < s->npaths; i++)
    e = kh_buf_put_str(out, s->paths[i]);
  if (!e) e = kh_buf_put_u8(out, s->has_parent);
  if (!e && s->has_parent) e = kh_buf_append(out, s->parent, 32);
  if (!e) e = kh_buf_append(out, s->tree, 32);
  if (!e) e = kh_buf_append(out, s->device, 16);
  if (!e) e = kh_buf_put_u64(out, s->counter);
  if (!e) e = kh_buf_put_uvar(out, s->files);
  if (!e) e = kh_buf_put_uvar(out, s->bytes);
  if (!e && s->has_original) {
    e = kh_buf_put_u8(out, SNAP_FIELD_ORIGINAL);
    if (!e) e = kh_buf_append(out, s->original, 32);
    if (!e) e = kh_buf_append(out, s->orig_device, 16);
    if (!e) e = kh_buf_put_u64(out, s->orig_counter);
  }
  if (!e && s->ntags) {
    if (s->ntags > SNAP_MAX_TAGS)
      return kh_seterr(KH_ERR_INVAL, "more than %u tags", SNAP_MAX_TAGS);
    e = kh_buf_put_u8(out, SNAP_FIELD_TAGS);
    if (!e) e = kh_buf_put_uvar(out, s->ntags);
    for (size_t i = 0; !e && i < s->ntags; i++) {
      size_t l = strlen(s->tags[i]);
      if (!l || l > SNAP_MAX_TAG)
        return kh_seterr(KH_ERR_INVAL, "a tag must have 1 to %u bytes", SNAP_MAX_TAG);
      e = kh_buf_put_str(out, s->tags[i]);
    }
  }
  if (!e && s->has_copy_of) {
    e = kh_buf_put_u8(out, SNAP_FIELD_COPY_OF);
    if (!e) e = kh_buf_append(out, s->copy_of, 32);
    if (!e) e = kh_buf_append(out, s->copy_device, 16);
    if (!e) e = kh_buf_put_u64(out, s->copy_counter);
  }
  return e;
}

static char *dup_text(const uint8_t *p, size_t n)
{
  if (!p || memchr(p, 0, n))
    return NULL;
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

kh_err kh_snap_decode(const uint8_t *p, size_t n, kh_snap *s)
{
  memset(s, 0, sizeof *s);
  kh_rd r;
  kh_rd_init(&r, p, n);
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  if (!magic || memcmp(magic, SNAP_MAGIC, 5))
    return kh_seterr(KH_ERR_FORMAT, "malformed snapshot");
  s->time_ns = (int64_t)kh_rd_u64(&r);
  size_t l;
  const uint8_t *h = kh_rd_lbytes(&r, 1024, &l);
  s->host = dup_text(h, l);
  uint64_t np = kh_rd_uvar(&r);
  if (!s->host || np > SNAP_MAX_PATHS || np > kh_rd_left(&r))
    goto bad;
  s->paths = calloc(np ? np : 1, sizeof *s->paths);
  if (!s->paths)
    goto bad;
  for (uint64_t i = 0; i < np; i++) {
    const uint8_t *q = kh_rd_lbytes(&r, KH_NAME_MAX * 4, &l);
    if (!(s->paths[i] = dup_text(q, l)))
      goto bad;
    s->npaths++;
  }
  uint8_t hp = kh_rd_u8(&r);
  if (hp > 1)
    goto bad;
  s->has_parent = hp;
  if (s->has_parent)
    kh_rd_copy(&r, s->parent, 32);
  kh_rd_copy(&r, s->tree, 32);
  kh_rd_copy(&r, s->device, 16);
  s->counter = kh_rd_u64(&r);
  s->files = kh_rd_uvar(&r);
  s->bytes = kh_rd_uvar(&r);
  /* optional fields, in increasing kind: the snapshot this one replaces,
   * the tags (a snapshot without tags has no tags field), the snapshot
   * this one copies */
  for (uint8_t last = 0; kh_rd_ok(&r) && kh_rd_left(&r);) {
    uint8_t kind = kh_rd_u8(&r);
    if (kind <= last)
      goto bad;
    last = kind;
    if (kind == SNAP_FIELD_ORIGINAL) {
      s->has_original = true;
      kh_rd_copy(&r, s->original, 32);
      kh_rd_copy(&r, s->orig_device, 16);
      s->orig_counter = kh_rd_u64(&r);
    } else if (kind == SNAP_FIELD_TAGS) {
      uint64_t nt = kh_rd_uvar(&r);
      if (!kh_rd_ok(&r) || nt == 0 || nt > SNAP_MAX_TAGS || nt > kh_rd_left(&r))
        goto bad;
      s->tags = calloc(nt, sizeof *s->tags);
      if (!s->tags)
        goto bad;
      for (uint64_t i = 0; i < nt; i++) {
        const uint8_t *q = kh_rd_lbytes(&r, SNAP_MAX_TAG, &l);
        if (!q || !l || !(s->tags[i] = dup_text(q, l)))
          goto bad;
        s->ntags++;
      }
    } else if (kind == SNAP_FIELD_COPY_OF) {
      s->has_copy_of = true;
      kh_rd_copy(&r, s->copy_of, 32);
      kh_rd_copy(&r, s->copy_device, 16);
      s->copy_counter = kh_rd_u64(&r);
    } else {
      goto bad;
    }
  }
  if (!kh_rd_done(&r))
    goto bad;
  return KH_OK;
bad:
  kh_snap_release(s);
  return kh_seterr(KH_ERR_FORMAT, "malformed snapshot");
}

void kh_snap_release(kh_snap *s)
{
  free(s->host);
  for (size_t i = 0; i < s->npaths; i++)
    free(s->paths[i]);
  free(s->paths);
  for (size_t i = 0; i < s->ntags; i++)
    free(s->tags[i]);
  free(s->tags);
  memset(s, 0, sizeof *s);
}
