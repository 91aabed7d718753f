/* Streaming ZIP writer (see zip.h).  Section numbers are APPNOTE 6.3.x. */
#include "zip.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define U32_MAX 0xffffffffu
#define U16_MAX 0xffffu
#define CD_MAX ((size_t)1 << 32)   /* hard cap on the in-memory central directory */
#define VERSION_MADE_BY ((3u << 8) | 45u) /* Unix, spec 4.5 */

struct zip_writer {
  FILE *f;
  uint64_t off;           /* bytes written so far */
  uint8_t *cd;            /* central directory being built */
  size_t cdlen, cdcap;
  uint64_t entries;
  /* the open file entry */
  bool open, zip64;
  zip_entry cur;
  uint8_t *curname;
  uint64_t curoff, written;
  uint32_t crc;
};

/* ---- CRC-32 (ISO-HDLC, as zip uses it), table driven, 8 bytes a step ---- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
  if (crc_table[0][1]) return;
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t a = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff] ^
          crc_table[4][a >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
          crc_table[0][p[7]];
  }
  while (n--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ---- little-endian records ---------------------------------------------- */

typedef struct rec {
  uint8_t b[512];
  size_t n;
} rec;

static void put16(rec *r, uint32_t v) { r->b[r->n++] = (uint8_t)v; r->b[r->n++] = (uint8_t)(v >> 8); }
static void put32(rec *r, uint32_t v) { put16(r, v & 0xffff); put16(r, v >> 16); }
static void put64(rec *r, uint64_t v) { put32(r, (uint32_t)v); put32(r, (uint32_t)(v >> 32)); }

static int out(zip_writer *z, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, z->f) != n) return -1;
  z->off += n;
  return 0;
}

static int cd_add(zip_writer *z, const void *p, size_t n) {
  if (z->cdlen + n > z->cdcap) {
    size_t nc = z->cdcap ? z->cdcap : 4096;
    while (nc < z->cdlen + n) nc *= 2;
    if (nc > CD_MAX) return -1;
    uint8_t *np = realloc(z->cd, nc);
    if (!np) return -1;
    z->cd = np;
    z->cdcap = nc;
  }
  memcpy(z->cd + z->cdlen, p, n);
  z->cdlen += n;
  return 0;
}

zip_writer *zip_new(FILE *f) {
  crc_init();
  zip_writer *z = calloc(1, sizeof *z);
  if (z) z->f = f;
  return z;
}

void zip_free(zip_writer *z) {
  if (!z) return;
  free(z->cd);
  free(z->curname);
  free(z);
}

/* MS-DOS date and time (local time, 2-second resolution, 1980..2107). */
static void dos_time(int64_t t, uint32_t *dtime, uint32_t *ddate) {
  struct tm tm;
  time_t s = (time_t)t;
  if (t < 315532800 || !localtime_r(&s, &tm) || tm.tm_year < 80 || tm.tm_year > 207) {
    *dtime = 0;
    *ddate = (0u << 9) | (1u << 5) | 1u; /* 1980-01-01 */
    return;
  }
  *dtime = (uint32_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
  *ddate = (uint32_t)((tm.tm_year - 80) << 9 | (tm.tm_mon + 1) << 5 | tm.tm_mday);
}

/* Names that are valid UTF-8 get the language encoding flag (bit 11). */
static bool valid_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!k || i + k > n || (k == 2 && c < 0xc2)) return false;
    for (size_t j = 1; j < k; j++)
      if ((s[i + j] & 0xc0) != 0x80) return false;
    i += k;
  }
  return true;
}

static uint32_t mtime32(int64_t t) {
  return (uint32_t)(t < INT32_MIN ? INT32_MIN : t > INT32_MAX ? INT32_MAX : t);
}

/* "UT" (0x5455, mtime) and "ux" (0x7875, uid/gid) extra fields. */
static void unix_extras(rec *r, const zip_entry *e) {
  put16(r, 0x5455);
  put16(r, 5);
  r->b[r->n++] = 1; /* mtime present */
  put32(r, mtime32(e->mtime));
  put16(r, 0x7875);
  put16(r, 11);
  r->b[r->n++] = 1;  /* version */
  r->b[r->n++] = 4;
  put32(r, e->uid);
  r->b[r->n++] = 4;
  put32(r, e->gid);
}

static uint32_t external_attr(const zip_entry *e) {
  uint32_t fmt = e->type == 'd' ? S_IFDIR : e->type == 'l' ? S_IFLNK : S_IFREG;
  uint32_t a = (fmt | (e->mode & 07777)) << 16;
  if (e->type == 'd') a |= 0x10; /* MS-DOS directory bit */
  return a;
}

/* Write the local header (4.3.7) and queue the central one (4.3.12) once
 * the crc and size are known: called by zip_begin for dirs and symlinks and
 * by zip_end for files. */
static int local_header(zip_writer *z, const zip_entry *e, const uint8_t *name, size_t nlen,
                        bool descriptor, bool zip64, uint32_t crc, uint64_t size) {
  uint32_t dt, dd;
  dos_time(e->mtime, &dt, &dd);
  uint32_t flags = (descriptor ? 0x0008u : 0) | (valid_utf8(name, nlen) ? 0x0800u : 0);
  rec r = {.n = 0};
  put32(&r, 0x04034b50);
  put16(&r, zip64 ? 45 : 20);
  put16(&r, flags);
  put16(&r, 0); /* stored */
  put16(&r, dt);
  put16(&r, dd);
  put32(&r, descriptor ? 0 : crc);
  put32(&r, zip64 ? U32_MAX : descriptor ? 0 : (uint32_t)size);
  put32(&r, zip64 ? U32_MAX : descriptor ? 0 : (uint32_t)size);
  put16(&r, (uint32_t)nlen);
  size_t xlen_at = r.n;
  put16(&r, 0);
  size_t x0 = r.n;
  if (zip64) { /* 4.5.3: sizes known only in the descriptor: zeros here */
    put16(&r, 0x0001);
    put16(&r, 16);
    put64(&r, 0);
    put64(&r, 0);
  }
  unix_extras(&r, e);
  size_t xlen = r.n - x0;
  r.b[xlen_at] = (uint8_t)xlen;
  r.b[xlen_at + 1] = (uint8_t)(xlen >> 8);
  if (out(z, r.b, x0) || out(z, name, nlen) || out(z, r.b + x0, xlen)) return -1;
  return 0;
}

static int central_header(zip_writer *z, const zip_entry *e, const uint8_t *name, size_t nlen,
                          bool descriptor, bool zip64, uint32_t crc, uint64_t size,
                          uint64_t loff) {
  uint32_t dt, dd;
  dos_time(e->mtime, &dt, &dd);
  uint32_t flags = (descriptor ? 0x0008u : 0) | (valid_utf8(name, nlen) ? 0x0800u : 0);
  bool big_size = size >= U32_MAX, big_off = loff >= U32_MAX;
  rec r = {.n = 0};
  put32(&r, 0x02014b50);
  put16(&r, VERSION_MADE_BY);
  put16(&r, zip64 || big_size || big_off ? 45 : 20);
  put16(&r, flags);
  put16(&r, 0);
  put16(&r, dt);
  put16(&r, dd);
  put32(&r, crc);
  put32(&r, big_size ? U32_MAX : (uint32_t)size);
  put32(&r, big_size ? U32_MAX : (uint32_t)size);
  put16(&r, (uint32_t)nlen);
  size_t xlen_at = r.n;
  put16(&r, 0);
  put16(&r, 0); /* comment */
  put16(&r, 0); /* disk */
  put16(&r, 0); /* internal attributes */
  put32(&r, external_attr(e));
  put32(&r, big_off ? U32_MAX : (uint32_t)loff);
  size_t x0 = r.n;
  if (big_size || big_off) { /* 4.5.3: only the fields that overflowed, in order */
    put16(&r, 0x0001);
    put16(&r, (big_size ? 16u : 0u) + (big_off ? 8u : 0u));
    if (big_size) { put64(&r, size); put64(&r, size); }
    if (big_off) put64(&r, loff);
  }
  unix_extras(&r, e);
  size_t xlen = r.n - x0;
  r.b[xlen_at] = (uint8_t)xlen;
  r.b[xlen_at + 1] = (uint8_t)(xlen >> 8);
  z->entries++;
  if (cd_add(z, r.b, x0) || cd_add(z, name, nlen) || cd_add(z, r.b + x0, xlen)) return -1;
  return 0;
}

int zip_begin(zip_writer *z, const zip_entry *e) {
  if (z->open || e->namelen + 1 > U16_MAX) return -1;
  /* directories are named with a trailing '/' */
  size_t nlen = e->namelen + (e->type == 'd');
  uint8_t *name = malloc(nlen + 1);
  if (!name) return -1;
  memcpy(name, e->name, e->namelen);
  if (e->type == 'd') name[e->namelen] = '/';
  uint64_t loff = z->off;
  int rc = -1;
  if (e->type == 'f') {
    z->cur = *e;
    z->curname = name;
    name = NULL;
    z->curoff = loff;
    z->zip64 = e->size >= U32_MAX;
    z->written = 0;
    z->crc = 0;
    z->open = true;
    rc = local_header(z, e, z->curname, nlen, true, z->zip64, 0, 0);
  } else {
    const uint8_t *data = e->type == 'l' ? e->link : NULL;
    size_t dlen = e->type == 'l' ? e->linklen : 0;
    uint32_t crc = crc_update(0, data, dlen);
    if (!local_header(z, e, name, nlen, false, false, crc, dlen) && !out(z, data, dlen) &&
        !central_header(z, e, name, nlen, false, false, crc, dlen, loff))
      rc = 0;
  }
  free(name);
  return rc;
}

int zip_data(zip_writer *z, const uint8_t *p, size_t n) {
  if (!z->open || n > z->cur.size - z->written) return -1;
  z->crc = crc_update(z->crc, p, n);
  z->written += n;
  return out(z, p, n);
}

int zip_end(zip_writer *z) {
  if (!z->open || z->written != z->cur.size) return -1;
  z->open = false;
  rec r = {.n = 0}; /* 4.3.9 data descriptor, with its optional signature */
  put32(&r, 0x08074b50);
  put32(&r, z->crc);
  if (z->zip64) { put64(&r, z->written); put64(&r, z->written); }
  else { put32(&r, (uint32_t)z->written); put32(&r, (uint32_t)z->written); }
  size_t nlen = z->cur.namelen;
  int rc = out(z, r.b, r.n) ||
           central_header(z, &z->cur, z->curname, nlen, true, z->zip64, z->crc, z->written, z->curoff)
               ? -1 : 0;
  free(z->curname);
  z->curname = NULL;
  return rc;
}

int zip_finish(zip_writer *z) {
  if (z->open) return -1;
  uint64_t cdoff = z->off, cdsize = z->cdlen;
  if (out(z, z->cd, z->cdlen)) return -1;
  bool z64 = z->entries >= U16_MAX || cdoff >= U32_MAX || cdsize >= U32_MAX;
  rec r = {.n = 0};
  if (z64) {
    uint64_t eocd64 = z->off;
    put32(&r, 0x06064b50); /* 4.3.14 */
    put64(&r, 44);
    put16(&r, VERSION_MADE_BY);
    put16(&r, 45);
    put32(&r, 0);
    put32(&r, 0);
    put64(&r, z->entries);
    put64(&r, z->entries);
    put64(&r, cdsize);
    put64(&r, cdoff);
    put32(&r, 0x07064b50); /* 4.3.15 */
    put32(&r, 0);
    put64(&r, eocd64);
    put32(&r, 1);
  }
  put32(&r, 0x06054b50); /* 4.3.16 */
  put16(&r, 0);
  put16(&r, 0);
  put16(&r, z64 ? U16_MAX : (uint32_t)z->entries);
  put16(&r, z64 ? U16_MAX : (uint32_t)z->entries);
  put32(&r, z64 ? U32_MAX : (uint32_t)cdsize);
  put32(&r, z64 ? U32_MAX : (uint32_t)cdoff);
  put16(&r, 0);
  return out(z, r.b, r.n);
}
