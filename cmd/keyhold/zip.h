/* A streaming ZIP writer for keyhold dump --archive zip (PKWARE APPNOTE
 * 6.3): entries are stored (no compression), each followed by a data
 * descriptor carrying its CRC-32, so nothing is buffered or rewritten; ZIP64
 * records are used where a size, an offset or the entry count does not fit
 * 32 (16) bits.  Unix modes, uid/gid ("ux" extra field) and the mtime
 * ("UT" extra field) are recorded.  Writes to a FILE; callers check
 * ferror().  The central directory is kept in memory until zip_finish
 * (about 100 bytes plus the name per entry). */
#ifndef KH_CLI_ZIP_H
#define KH_CLI_ZIP_H
#include <stdint.h>
#include <stdio.h>

typedef struct zip_writer zip_writer;

typedef struct zip_entry {
  const uint8_t *name;   /* relative, '/'-separated, without a trailing '/' */
  size_t namelen;
  char type;             /* 'f' file, 'd' directory, 'l' symlink */
  uint32_t mode;         /* permission bits 07777 */
  uint32_t uid, gid;
  int64_t mtime;         /* seconds */
  uint64_t size;         /* 'f': the content bytes that will follow */
  const uint8_t *link;   /* 'l': the target, stored as the entry's content */
  size_t linklen;
} zip_entry;

/* NULL if out of memory. */
zip_writer *zip_new(FILE *f);
/* Start an entry.  A directory or symlink is complete at once; a file
 * needs exactly e->size bytes through zip_data, then zip_end.  -1 on a
 * write error, a name longer than 65535 bytes or no memory. */
int zip_begin(zip_writer *z, const zip_entry *e);
int zip_data(zip_writer *z, const uint8_t *p, size_t n);
/* -1 also if the bytes given differ from the announced size. */
int zip_end(zip_writer *z);
/* Central directory and end records. */
int zip_finish(zip_writer *z);
void zip_free(zip_writer *z);

#endif
