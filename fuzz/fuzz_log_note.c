/* Signed-note parser and verifier (lib/log/note.c) on arbitrary input,
 * against the Go PeterNeumann key and a cosigner key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static kh_note_verifier *v[2];
  if (!v[0]) {
    kh_note_verifier_new("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v[0]);
    kh_note_verifier_new("EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop", &v[1]);
    if (!v[0] || !v[1])
      abort();
  }
  kh_note_info info;
  bool ok[2];
  uint64_t t[2];
  kh_err e = kh_note_open(data, size, v, 2, &info, ok, t);
  if (e == KH_OK && (info.text_len > size || info.nverified == 0 || !(ok[0] || ok[1])))
    abort();
  /* the same bytes as a verifier key string */
  if (size < 1024) {
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    kh_note_verifier *x = NULL;
    kh_note_signer *y = NULL;
    kh_note_verifier_new(s, &x);
    kh_note_signer_new(s, &y);
    kh_note_verifier_free(x);
    kh_note_signer_free(y);
    free(s);
  }
  return 0;
}
