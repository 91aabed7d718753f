/* Fuzz the tree blob parser (docs/format.md §8).  When kh_tree_decode
 * succeeds: names are valid and strictly sorted, file sizes equal their
 * chunk sums, every node is found by name, and encode(decode(x)) == x
 * (the encoding is canonical).  A rejected input must leave t empty. */
#include "snapshot/tree.h"
#include "keyhold/vault.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  kh_tree t;
  if (kh_tree_decode(data, size, &t) != KH_OK) {
    if (t.nodes || t.raw || t.refs || t.n)
      abort();
    return 0;
  }
  for (size_t i = 0; i < t.n; i++) {
    const kh_tnode *x = &t.nodes[i];
    if (!x->namelen || memchr(x->name, '/', x->namelen) || memchr(x->name, 0, x->namelen) ||
        (x->namelen == 1 && x->name[0] == '.') ||
        (x->namelen == 2 && !memcmp(x->name, "..", 2)))
      abort();
    if (i && kh_name_cmp(t.nodes[i - 1].name, t.nodes[i - 1].namelen, x->name, x->namelen) >= 0)
      abort();
    if (x->type < KH_NODE_FILE || x->type > KH_NODE_SOCKET || x->mode > 07777)
      abort();
    if (x->type == KH_NODE_FILE) {
      uint64_t s = 0;
      for (size_t c = 0; c < x->nchunks; c++)
        s += x->chunks[c].len;
      if (s != x->size)
        abort();
    }
    if (kh_tree_find(&t, x->name, x->namelen) != x)
      abort();
    /* flags and extended attributes: known bits, files and dirs only,
     * a list of exactly nxattr well-formed entries */
    if ((x->flags & ~KH_FLAGS_ALL) ||
        ((x->flags || x->nxattr) && x->type != KH_NODE_FILE && x->type != KH_NODE_DIR))
      abort();
    size_t off = 0, nl, vl, k = 0;
    const uint8_t *nm, *val;
    while (kh_xattr_next(x->xattrs, x->xattrlen, &off, &nm, &nl, &val, &vl)) {
      if (!nl || nl > KH_XATTR_NAME_MAX || vl > KH_XATTR_VALUE_MAX || memchr(nm, 0, nl))
        abort();
      k++;
    }
    if (k != x->nxattr || off != x->xattrlen)
      abort();
  }
  kh_buf enc;
  kh_buf_init(&enc, size + 64);
  if (kh_tree_encode(t.nodes, t.n, &enc) != KH_OK || enc.len != size ||
      memcmp(enc.data, data, size))
    abort();
  kh_buf_release(&enc);
  kh_tree_release(&t);
  return 0;
}
