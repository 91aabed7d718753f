/* The protocol parsers a server runs on request input (lib/proto,
 * include/keyhold/proto.h): object names, request targets, capability
 * lists, approval codes, base64 fields, KH-Seq and Range values and the
 * canonical request built from them.  Input: one selector byte, then the text.  Whatever is accepted must
 * round-trip to the same spelling, and nothing may be read past the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keyhold/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  char *p = malloc(size); /* NUL-terminated private copy of the text */
  if (!p)
    return 0;
  memcpy(p, data + 1, size - 1);
  p[size - 1] = '\0';
  const char *id = NULL;
  switch (data[0] % 8) {
  case 0: {
    kh_obj_kind k = kh_proto_obj_kind(p, &id);
    if (k != KH_OBJ_INVALID) {
      if (kh_proto_obj_max(k) == 0 || (id && (id < p || id >= p + size)))
        abort();
      /* a valid name is a valid target below an account */
      char t[2048];
      snprintf(t, sizeof t, "/v1/accounts/x/objects/%s", p);
      if (strlen(p) < 900 && !kh_proto_target_valid(t))
        abort();
      unsigned r = kh_proto_obj_allowed(KH_OP_GET, p, "0123456789abcdef0123456789abcdef", 0);
      if (r & ~(KH_CAP_ALL | KH_PROTO_CAP_NEVER))
        abort();
    }
    (void)kh_proto_obj_allowed(KH_OP_LIST, p, NULL, KH_CAP_ALL);
    break;
  }
  case 1:
    if (kh_proto_target_valid(p)) {
      char *out = NULL;
      size_t len = 0;
      char sha[65];
      kh_proto_sha256_hex(data, size, sha);
      if (kh_proto_canonical_request("GET", p, "s", 1, sha, NULL, NULL, &out, &len) != KH_OK ||
          strlen(out) != len)
        abort();
      free(out);
    }
    break;
  case 2: {
    unsigned c = 0;
    char back[64];
    if (kh_proto_caps_parse(p, &c) == KH_OK) {
      kh_proto_caps_format(c, back, sizeof back);
      if (c == 0 || c > KH_CAP_ALL || strlen(back) != strlen(p))
        abort();
    }
    break;
  }
  case 3: {
    char code[KH_PROTO_CODE_LEN + 1], again[KH_PROTO_CODE_LEN + 1];
    if (kh_proto_code_parse(p, code) == KH_OK &&
        (kh_proto_code_parse(code, again) != KH_OK || strcmp(code, again) != 0))
      abort();
    break;
  }
  case 4: {
    uint8_t out[64];
    size_t n = size > 1 ? (size_t)(data[1] % 64) : 0;
    char *t = p + (size > 1 ? 1 : 0);
    if (kh_proto_unb64(t, out, n) == KH_OK) {
      char back[100];
      kh_proto_b64(out, n, back);
      if (strcmp(back, t) != 0)
        abort();
    }
    break;
  }
  case 6: {
    uint64_t v = 0;
    char back[32];
    if (kh_proto_seq_parse(p, &v) == KH_OK) {
      snprintf(back, sizeof back, "%llu", (unsigned long long)v);
      if (v == 0 || v > KH_PROTO_SEQ_MAX || strcmp(back, p) != 0)
        abort();
    }
    break;
  }
  case 7: {
    uint64_t a = 0, b = 0;
    char back[64];
    if (kh_proto_range_parse(p, &a, &b) == KH_OK) {
      snprintf(back, sizeof back, "bytes=%llu-%llu", (unsigned long long)a, (unsigned long long)b);
      if (a > b || strcmp(back, p) != 0)
        abort();
    }
    break;
  }
  default: {
    kh_proto_window w;
    memset(&w, 0, sizeof w);
    for (size_t i = 1; i + 8 <= size; i += 8) {
      uint64_t s;
      memcpy(&s, data + i, 8);
      s >>= data[i] % 64;
      if (kh_proto_window_accept(&w, s) == KH_OK && kh_proto_window_accept(&w, s) == KH_OK)
        abort();
    }
    break;
  }
  }
  free(p);
  return 0;
}
