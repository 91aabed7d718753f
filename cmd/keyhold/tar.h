/* A POSIX tar (pax interchange format) writer for keyhold dump: ustar
 * headers, with a pax extended header in front when a name, link target
 * or number does not fit (POSIX.1-2008 "pax").  Writes to a FILE; callers
 * check ferror(). */
#ifndef KH_CLI_TAR_H
#define KH_CLI_TAR_H
#include <stdint.h>
#include <stdio.h>

typedef struct tar_entry {
  const uint8_t *name;   /* relative, '/'-separated; dirs without the trailing '/' */
  size_t namelen;
  char type;             /* '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo */
  uint32_t mode;         /* permission bits 07777 */
  uint64_t uid, gid;
  uint64_t size;         /* file content bytes that follow (type '0' only) */
  int64_t mtime;         /* seconds */
  const uint8_t *link;   /* hard link or symlink target */
  size_t linklen;
  uint32_t devmajor, devminor;
} tar_entry;

/* Header(s) of one entry; for type '0' exactly size content bytes must
 * follow, then tar_pad(size).  0 on success, -1 on a write error or a
 * name that is too long even for pax (more than 64 KiB). */
int tar_write_header(FILE *f, const tar_entry *e);
/* Zero padding after size content bytes, to the next 512-byte block. */
int tar_pad(FILE *f, uint64_t size);
/* End of archive: two zero blocks. */
int tar_finish(FILE *f);

#endif
