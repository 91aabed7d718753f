/* Known damage (docs/format.md §7.1): packs found missing or truncated and
 * blobs found damaged, by check or by a backup.  A record is only ever a
 * reason NOT to use a stored copy: backup stores such a blob again instead
 * of deduplicating against it, and when the index has the blob twice the
 * copy that is not known damaged wins.  So a false or forged record costs
 * space, never data; repair index removes the records it has dealt with. */
#include "repo/vault_internal.h"
#include "common/err.h"
#include "common/wire.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define DAMAGE_MAGIC "KHDM1"
#define DAMAGE_MAX (1u << 20) /* entries of each kind in one record */

static int cmp32(const void *a, const void *b) { return memcmp(a, b, 32); }
static int cmp64(const void *a, const void *b) { return memcmp(a, b, 64); }

static kh_err add_sets(kh_vault *v, const uint8_t (*packs)[32], size_t np,
                       const uint8_t (*blobs)[64], size_t nb);

static bool has64(const uint8_t (*set)[64], size_t n, const uint8_t key[64])
{
  return n && bsearch(key, set, n, 64, cmp64) != NULL;
}

bool kh_vault_pack_known_bad(const kh_vault *v, const uint8_t pack[32])
{
  return v->nbad_packs && bsearch(pack, v->bad_packs, v->nbad_packs, 32, cmp32) != NULL;
}

bool kh_vault_blob_usable(const kh_vault *v, const kh_index *idx, const kh_index_entry *en)
{
  if (!en || en->pack >= idx->npacks)
    return false;
  const uint8_t *pid = idx->packs[en->pack].id;
  if (kh_vault_pack_known_bad(v, pid))
    return false;
  if (!v->nbad_blobs)
    return true;
  uint8_t key[64];
  memcpy(key, pid, 32);
  memcpy(key + 32, en->id, 32);
  return !has64((const uint8_t(*)[64])v->bad_blobs, v->nbad_blobs, key);
}

/* Add to the in-memory sets (sorted, without duplicates). */
static kh_err add_sets(kh_vault *v, const uint8_t (*packs)[32], size_t np,
                       const uint8_t (*blobs)[64], size_t nb)
{
  if (np) {
    uint8_t(*n)[32] = realloc(v->bad_packs, (v->nbad_packs + np) * 32);
    if (!n)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    v->bad_packs = n;
    memcpy(n + v->nbad_packs, packs, np * 32);
    size_t k = v->nbad_packs + np, w = 0;
    qsort(n, k, 32, cmp32);
    for (size_t i = 0; i < k; i++)
      if (!w || memcmp(n[w - 1], n[i], 32))
        memmove(n[w++], n[i], 32);
    v->nbad_packs = w;
  }
  if (nb) {
    uint8_t(*n)[64] = realloc(v->bad_blobs, (v->nbad_blobs + nb) * 64);
    if (!n)
      return kh_seterr(KH_ERR_NOMEM, "out of memory");
    v->bad_blobs = n;
    memcpy(n + v->nbad_blobs, blobs, nb * 64);
    size_t k = v->nbad_blobs + nb, w = 0;
    qsort(n, k, 64, cmp64);
    for (size_t i = 0; i < k; i++)
      if (!w || memcmp(n[w - 1], n[i], 64))
        memmove(n[w++], n[i], 64);
    v->nbad_blobs = w;
  }
  return KH_OK;
}

kh_err kh_damage_encode(const uint8_t (*packs)[32], size_t np, const uint8_t (*blobs)[64],
                        size_t nb, kh_buf *out)
{
  if (np > DAMAGE_MAX || nb > DAMAGE_MAX)
    return kh_seterr(KH_ERR_TOOBIG, "too many entries for one damage record");
  kh_buf_reset(out);
  kh_err e = kh_buf_append(out, DAMAGE_MAGIC, 5);
  if (!e) e = kh_buf_put_uvar(out, np);
  if (!e && np) e = kh_buf_append(out, packs, np * 32);
  if (!e) e = kh_buf_put_uvar(out, nb);
  if (!e && nb) e = kh_buf_append(out, blobs, nb * 64);
  return e;
}

kh_err kh_damage_decode(const uint8_t *p, size_t n, const uint8_t **packs, size_t *np,
                        const uint8_t **blobs, size_t *nb)
{
  kh_rd r;
  kh_rd_init(&r, p, n);
  *packs = *blobs = NULL;
  *np = *nb = 0;
  const uint8_t *magic = kh_rd_bytes(&r, 5);
  uint64_t cp = kh_rd_uvar(&r);
  if (!magic || memcmp(magic, DAMAGE_MAGIC, 5) || cp > DAMAGE_MAX || cp > kh_rd_left(&r) / 32)
    return kh_seterr(KH_ERR_FORMAT, "malformed damage record");
  const uint8_t *pk = kh_rd_bytes(&r, (size_t)cp * 32);
  uint64_t cb = kh_rd_uvar(&r);
  if (cb > DAMAGE_MAX || cb > kh_rd_left(&r) / 64)
    return kh_seterr(KH_ERR_FORMAT, "malformed damage record");
  const uint8_t *bl = kh_rd_bytes(&r, (size_t)cb * 64);
  if (!kh_rd_done(&r))
    return kh_seterr(KH_ERR_FORMAT, "malformed damage record");
  *packs = pk;
  *np = (size_t)cp;
  *blobs = bl;
  *nb = (size_t)cb;
  return KH_OK;
}

void kh_vault_clear_damage(kh_vault *v)
{
  free(v->bad_packs);
  free(v->bad_blobs);
  v->bad_packs = NULL;
  v->bad_blobs = NULL;
  v->nbad_packs = v->nbad_blobs = 0;
}

kh_err kh_vault_load_damage(kh_vault *v)
{
  uint8_t(*ids)[32] = NULL;
  size_t n = 0;
  kh_err e = kh_vault_list_ids(v, "damage", &ids, &n);
  /* a backup-only device on a region server may not list damage records:
   * it knows of none (at worst it deduplicates against a damaged copy,
   * which check reports and repair stores again) */
  if (e == KH_ERR_NOTFOUND || e == KH_ERR_DENIED)
    e = KH_OK, n = 0;
  kh_buf pt;
  kh_buf_init(&pt, (size_t)DAMAGE_MAX * 96 + 64);
  for (size_t i = 0; i < n && !e; i++) {
    kh_buf_reset(&pt);
    /* a record that does not authenticate is ignored: it could only ever
     * have made us store more */
    if (kh_vault_get_obj(v, "damage", "damage", ids[i], 32, &pt) != KH_OK)
      continue;
    const uint8_t *packs, *blobs;
    size_t np, nb;
    if (kh_damage_decode(pt.data, pt.len, &packs, &np, &blobs, &nb) == KH_OK)
      e = add_sets(v, (const uint8_t(*)[32])packs, np, (const uint8_t(*)[64])blobs, nb);
  }
  kh_buf_release(&pt);
  free(ids);
  return e;
}

kh_err kh_vault_record_damage(kh_vault *v, const uint8_t (*packs)[32], size_t np,
                              const uint8_t (*blobs)[64], size_t nb)
{
  if (!np && !nb)
    return KH_OK;
  if (np > DAMAGE_MAX)
    np = DAMAGE_MAX;
  if (nb > DAMAGE_MAX)
    nb = DAMAGE_MAX;
  kh_buf pt;
  kh_buf_init(&pt, (size_t)DAMAGE_MAX * 96 + 64);
  uint8_t id[32];
  randombytes_buf(id, sizeof id);
  kh_err e = kh_damage_encode(packs, np, blobs, nb, &pt);
  if (!e) e = kh_vault_put_obj(v, "damage", "damage", id, 32, pt.data, pt.len, true);
  if (!e) e = add_sets(v, packs, np, blobs, nb);
  kh_buf_release(&pt);
  return e;
}

kh_err kh_vault_scan_packs(kh_vault *v, bool record, uint64_t *nbad)
{
  uint8_t(*ids)[32] = NULL, (*gone)[32] = NULL;
  uint64_t *sizes = NULL;
  size_t n = 0, ng = 0;
  *nbad = 0;
  kh_err e = kh_vault_list_sized(v, "data", &ids, &sizes, &n);
  if (e)
    return e;
  gone = malloc((v->index.npacks ? v->index.npacks : 1) * 32);
  if (!gone) {
    e = kh_seterr(KH_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t p = 0; p < v->index.npacks; p++) {
    const kh_index_pack *pk = &v->index.packs[p];
    ptrdiff_t j = kh_ids_find((const uint8_t(*)[32])ids, n, pk->id);
    if ((j < 0 || sizes[j] != pk->size) && !kh_vault_pack_known_bad(v, pk->id))
      memcpy(gone[ng++], pk->id, 32);
  }
  *nbad = ng;
  if (!ng)
    goto out;
  /* recorded, so that every device and every later index load knows */
  e = record ? kh_vault_record_damage(v, (const uint8_t(*)[32])gone, ng, NULL, 0)
             : add_sets(v, (const uint8_t(*)[32])gone, ng, NULL, 0);
  if (e)
    goto out;
  /* reload, so that a copy of a blob elsewhere wins over the lost one */
  v->index_loaded = false;
  kh_index_release(&v->index);
  kh_index_init(&v->index);
  v->nindex_ids = v->nsuperseded = 0;
  e = kh_vault_load_index(v, NULL, NULL);
out:
  free(ids);
  free(sizes);
  free(gone);
  return e;
}

/* Add one decoded index to v->index, preferring a copy of a blob that is
 * not known damaged over one that is. */
static kh_err merge(kh_vault *v, const kh_index *t)
{
  uint32_t *map = malloc((t->npacks ? t->npacks : 1) * sizeof *map);
  if (!map)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  kh_err e = KH_OK;
  for (size_t p = 0; p < t->npacks && !e; p++)
    e = kh_index_add_pack(&v->index, t->packs[p].id, t->packs[p].size, &map[p]);
  for (size_t i = 0; i < t->cap && !e; i++) {
    const kh_index_entry *te = &t->slots[i];
    if (!te->used || te->pack >= t->npacks)
      continue;
    kh_pack_blob b;
    kh_index_blob(te, &b);
    kh_index_entry *have = kh_index_find(&v->index, te->id);
    if (!have) {
      e = kh_index_add(&v->index, &b, map[te->pack], NULL);
    } else if (!kh_vault_blob_usable(v, &v->index, have) &&
               kh_vault_blob_usable(v, t, te)) {
      if (have->pack < v->index.npacks)
        v->index.packs[have->pack].nblobs--;
      have->pack = map[te->pack];
      have->offset = b.offset;
      have->clen = b.clen;
      have->ulen = b.ulen;
      have->type = b.type;
      v->index.packs[have->pack].nblobs++;
    }
  }
  free(map);
  return e;
}

kh_err kh_vault_index_merge(kh_vault *v, const uint8_t *plain, size_t n)
{
  uint8_t(*sup)[32] = NULL;
  size_t nsup = 0;
  kh_err e;
  if (!v->nbad_packs && !v->nbad_blobs) { /* the common case: straight in */
    e = kh_index_decode(&v->index, plain, n, &sup, &nsup);
    free(sup);
    return e;
  }
  kh_index t;
  kh_index_init(&t);
  e = kh_index_decode(&t, plain, n, &sup, &nsup);
  free(sup);
  if (!e)
    e = merge(v, &t);
  kh_index_release(&t);
  return e;
}
