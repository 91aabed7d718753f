/* Hex and base64 (standard, padded) text encodings. */
#ifndef KH_COMMON_HEX_H
#define KH_COMMON_HEX_H
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

/* out must hold 2*n+1 bytes; always NUL-terminated, lowercase */
void kh_hex_encode(char *out, const uint8_t *in, size_t n);
/* exactly 2*n hex digits (either case) -> n bytes; KH_ERR_FORMAT otherwise */
kh_err kh_hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen);
/* out must hold kh_b64_len(n) bytes (includes NUL) */
size_t kh_b64_len(size_t n);
void kh_b64_encode(char *out, const uint8_t *in, size_t n);
/* strict standard base64 with padding; *outlen <= max or KH_ERR_FORMAT */
kh_err kh_b64_decode(uint8_t *out, size_t max, size_t *outlen, const char *in, size_t inlen);

#endif
