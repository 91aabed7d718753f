/* libkeyhold: a bounded JSON reader (RFC 8259) for the account protocol's
 * bodies (docs/protocol.md), used by the client and the server alike.
 *
 * The whole text is parsed into a tree in one allocation-bounded pass:
 * at most KH_JSON_MAX_DEPTH levels of nesting and KH_JSON_MAX_NODES values;
 * strings must be valid UTF-8 and may not contain U+0000 (so every string is
 * a C string); an object with a repeated key is refused; numbers are kept as
 * signed 64-bit integers when they are integers in range (anything else with
 * a fraction or exponent is a KH_JSON_NUM that kh_json_int refuses).
 * Trailing bytes other than whitespace are an error.  Fuzzed
 * (fuzz/fuzz_json.c).  Nothing prints. */
#ifndef KEYHOLD_JSON_H
#define KEYHOLD_JSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keyhold/error.h"

#define KH_JSON_MAX_DEPTH 16
#define KH_JSON_MAX_NODES 200000

typedef enum kh_json_type {
  KH_JSON_NULL = 1, KH_JSON_BOOL, KH_JSON_NUM, KH_JSON_STR, KH_JSON_ARR, KH_JSON_OBJ
} kh_json_type;

typedef struct kh_json kh_json;

/* Parse n bytes (need not be NUL-terminated).  KH_ERR_FORMAT with a detail
 * (byte offset) if malformed or over a bound; KH_ERR_NOMEM. */
kh_err kh_json_parse(const char *text, size_t n, kh_json **out);
/* Free the whole tree (from the root; NULL is fine). */
void kh_json_free(kh_json *root);

kh_json_type kh_json_type_of(const kh_json *j);
/* Members of an object / elements of an array (0 for anything else). */
size_t kh_json_len(const kh_json *j);
/* The i-th element of an array or the i-th member value of an object. */
const kh_json *kh_json_at(const kh_json *j, size_t i);
/* The i-th member's key of an object (NULL otherwise). */
const char *kh_json_key_at(const kh_json *j, size_t i);
/* The member called key of an object, NULL if absent or j not an object. */
const kh_json *kh_json_get(const kh_json *j, const char *key);
/* The string (NUL-terminated, valid UTF-8), NULL if j is not a string. */
const char *kh_json_string(const kh_json *j);
/* Its byte length (strings only; 0 otherwise). */
size_t kh_json_string_len(const kh_json *j);
/* true and *out if j is an integer number in int64 range. */
bool kh_json_int(const kh_json *j, int64_t *out);
bool kh_json_bool(const kh_json *j, bool *out);

/* Convenience: a member's string / integer (NULL / false if absent or of
 * another type). */
const char *kh_json_get_str(const kh_json *obj, const char *key);
bool kh_json_get_int(const kh_json *obj, const char *key, int64_t *out);

#endif
