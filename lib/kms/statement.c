/* Device statements (docs/log.md §5.2): an account's enrol and revoke
 * entries, built and signed by one of its devices and appended by the key
 * service byte for byte, after checking that they are what they claim. */
#include "kms/kms_internal.h"
#include "common/err.h"
#include "common/fault.h"

#include <stdlib.h>
#include <string.h>

kh_err kh_kms_append_statement(kh_kms *k, const char *entry, size_t len,
                               const uint8_t signer_pk[32], uint64_t *index)
{
  kh_log_entry *en = malloc(sizeof *en);
  char *again = NULL;
  size_t alen = 0;
  kh_err e = KH_OK;
  if (!en)
    return kh_seterr(KH_ERR_NOMEM, "out of memory");
  if ((e = kh_log_entry_parse(entry, len, en)))
    goto out;
  if (en->op != KH_LOG_OP_ENROL && en->op != KH_LOG_OP_REVOKE) {
    e = kh_seterr(KH_ERR_FORMAT, "a device statement is an enrol or revoke entry");
    goto out;
  }
  if (strcmp(en->region, k->cfg.region) != 0) {
    e = kh_seterr(KH_ERR_FORMAT, "the statement names region %s, not %s", en->region,
                  k->cfg.region);
    goto out;
  }
  /* the signer is the requester: "device:<id>" and "<id>:<signature>" */
  if (strncmp(en->requester, "device:", 7) != 0 || strlen(en->requester) != 7 + 32 ||
      strncmp(en->device, en->requester + 7, 32) != 0 || en->device[32] != ':') {
    e = kh_seterr(KH_ERR_FORMAT, "the statement's signer is not its requester");
    goto out;
  }
  /* canonical bytes only: what is logged is exactly what every reader
   * re-formats when it checks the signature */
  if ((e = kh_log_entry_format(en, &again, &alen)))
    goto out;
  if (alen != len || memcmp(again, entry, len) != 0) {
    e = kh_seterr(KH_ERR_FORMAT, "the statement is not in canonical form");
    goto out;
  }
  if ((e = kh_kms_verify_device_entry(en, en->requester + 7, signer_pk)))
    goto out;
  if ((e = kh_kms_log_text(k, again, alen, index)))
    goto out;
  /* event point for crash tests: the statement is durable, its effect not
   * yet recorded by the caller */
  (void)kh_fault_point("kms.statement.logged");
out:
  free(again);
  free(en);
  return e;
}
