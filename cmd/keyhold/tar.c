/* POSIX tar writer (see tar.h). */
#include "tar.h"

#include <stdbool.h>
#include <string.h>

#define BLOCK 512
#define PAX_MAX 65536

static const uint8_t zero_block[BLOCK];

/* value in octal, width-1 digits and a NUL; false if it does not fit */
static bool octal(char *field, size_t width, uint64_t v)
{
  size_t digits = width - 1;
  if (digits < 22 && v >> (3 * digits))
    return false;
  field[digits] = 0;
  for (size_t i = digits; i-- > 0;) {
    field[i] = (char)('0' + (v & 7));
    v >>= 3;
  }
  return true;
}

/* append one pax record "LEN key=value\n" to buf (cap PAX_MAX); false if full */
static bool pax_record(uint8_t *buf, size_t *len, const char *key, const uint8_t *val,
                       size_t vlen)
{
  size_t base = 3 + strlen(key) + vlen; /* ' ', '=', '\n' */
  size_t n = base + 1; /* n must be base + the number of digits of n */
  char num[24];
  for (;;) {
    int dl = snprintf(num, sizeof num, "%zu", n);
    if ((size_t)dl + base == n)
      break;
    n = (size_t)dl + base;
  }
  if (*len + n > PAX_MAX)
    return false;
  int dl = snprintf((char *)buf + *len, PAX_MAX - *len, "%zu %s=", n, key);
  *len += (size_t)dl;
  memcpy(buf + *len, val, vlen);
  *len += vlen;
  buf[(*len)++] = '\n';
  return true;
}

static void checksum(uint8_t h[BLOCK])
{
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < BLOCK; i++)
    sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  h[155] = ' ';
}

static void ustar(uint8_t h[BLOCK], const uint8_t *name, size_t nl, char type, uint32_t mode,
                  uint64_t uid, uint64_t gid, uint64_t size, int64_t mtime, const uint8_t *link,
                  size_t ll, uint32_t dmaj, uint32_t dmin)
{
  memset(h, 0, BLOCK);
  memcpy(h, name, nl > 100 ? 100 : nl);
  octal((char *)h + 100, 8, mode & 07777);
  if (!octal((char *)h + 108, 8, uid))
    octal((char *)h + 108, 8, 0);
  if (!octal((char *)h + 116, 8, gid))
    octal((char *)h + 116, 8, 0);
  if (!octal((char *)h + 124, 12, size))
    octal((char *)h + 124, 12, 0);
  if (mtime < 0 || !octal((char *)h + 136, 12, (uint64_t)mtime))
    octal((char *)h + 136, 12, 0);
  h[156] = (uint8_t)type;
  if (link)
    memcpy(h + 157, link, ll > 100 ? 100 : ll);
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  if (type == '3' || type == '4') {
    octal((char *)h + 329, 8, dmaj & 07777777);
    octal((char *)h + 337, 8, dmin & 07777777);
  }
  checksum(h);
}

int tar_write_header(FILE *f, const tar_entry *e)
{
  static uint8_t pax[PAX_MAX];
  uint8_t h[BLOCK];
  uint8_t name[PAX_MAX];
  size_t nl = e->namelen, plen = 0;
  bool dir = e->type == '5';
  if (nl + 2 > sizeof name)
    return -1;
  memcpy(name, e->name, nl);
  if (dir)
    name[nl++] = '/';
  char tmp[24], field[12];
  bool ok = true;
  if (nl > 100)
    ok = ok && pax_record(pax, &plen, "path", name, nl);
  if (e->link && e->linklen > 100)
    ok = ok && pax_record(pax, &plen, "linkpath", e->link, e->linklen);
  if (!octal(field, 8, e->uid)) {
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)e->uid);
    ok = ok && pax_record(pax, &plen, "uid", (const uint8_t *)tmp, (size_t)k);
  }
  if (!octal(field, 8, e->gid)) {
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)e->gid);
    ok = ok && pax_record(pax, &plen, "gid", (const uint8_t *)tmp, (size_t)k);
  }
  if (!octal(field, 12, e->size)) {
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)e->size);
    ok = ok && pax_record(pax, &plen, "size", (const uint8_t *)tmp, (size_t)k);
  }
  if (e->mtime < 0 || !octal(field, 12, (uint64_t)e->mtime)) {
    int k = snprintf(tmp, sizeof tmp, "%lld", (long long)e->mtime);
    ok = ok && pax_record(pax, &plen, "mtime", (const uint8_t *)tmp, (size_t)k);
  }
  if (!ok)
    return -1;
  if (plen) {
    static const uint8_t pname[] = "././@PaxHeader";
    ustar(h, pname, sizeof pname - 1, 'x', 0644, 0, 0, plen, e->mtime < 0 ? 0 : e->mtime,
          NULL, 0, 0, 0);
    if (fwrite(h, 1, BLOCK, f) != BLOCK || fwrite(pax, 1, plen, f) != plen ||
        tar_pad(f, plen))
      return -1;
  }
  ustar(h, name, nl, e->type, e->mode, e->uid, e->gid, e->type == '0' ? e->size : 0, e->mtime,
        e->link, e->linklen, e->devmajor, e->devminor);
  return fwrite(h, 1, BLOCK, f) == BLOCK ? 0 : -1;
}

int tar_pad(FILE *f, uint64_t size)
{
  size_t r = (size_t)(size % BLOCK);
  if (!r)
    return 0;
  return fwrite(zero_block, 1, BLOCK - r, f) == BLOCK - r ? 0 : -1;
}

int tar_finish(FILE *f)
{
  for (int i = 0; i < 2; i++)
    if (fwrite(zero_block, 1, BLOCK, f) != BLOCK)
      return -1;
  return 0;
}
