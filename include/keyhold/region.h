/* libkeyhold: a region as a whole (docs/format.md §1): its marker, key
 * service and log, without any account in it yet.  A region server
 * (keyholdd init) makes one with this; `keyhold init` makes one the same
 * way when it creates the first account. */
#ifndef KEYHOLD_REGION_H
#define KEYHOLD_REGION_H
#include <stdbool.h>
#include "keyhold/error.h"
#include "keyhold/kms.h"

/* Create a region in path (created if missing; it must be empty): a
 * random instance id, the key service and empty log (kh_kms_create_instance)
 * and the region marker "keyhold-region", written last.  region_id NULL
 * means "local"; it must be 1-63 of [a-z0-9-].  instance_out (may be NULL)
 * receives the instance id.  KH_ERR_EXISTS if path is not empty; on any
 * failure kms/ and log/ are removed again so that it can be rerun. */
/* true if id is a valid region id: 1-63 of [a-z0-9-] (docs/format.md §1). */
bool kh_region_id_valid(const char *id);

kh_err kh_region_create(const char *path, const char *region_id,
                        char instance_out[KH_REGION_INSTANCE_HEX + 1]);

#endif
