/* Path patterns for backup excludes (docs/cli.md "Patterns"): a glob per
 * path component ("*", "?", "[...]", "\x"), "**" for any number of
 * components, a leading "/" anchors at the root, otherwise the pattern may
 * start at any component; "!" re-includes.  A pattern that matches a path
 * also matches everything below it (it matches a run of the path's
 * components, not necessarily ending at the last one).
 *
 * Patterns are compiled once; matching allocates nothing. */
#ifndef KH_COMMON_PATTERN_H
#define KH_COMMON_PATTERN_H
#include <stdbool.h>
#include <stddef.h>
#include "keyhold/error.h"

#define KH_PATTERN_MAX_LEN 4096   /* bytes of one pattern */
#define KH_PATTERN_MAX_COUNT 65536 /* patterns in one set */

typedef struct kh_pattern_set kh_pattern_set;

/* An empty set; free with kh_pattern_set_free (NULL is a no-op). */
kh_err kh_pattern_set_new(kh_pattern_set **out);
void kh_pattern_set_free(kh_pattern_set *s);
/* Compile pat (NUL-terminated) and append it; icase folds ASCII letters.
 * KH_ERR_INVAL (with a detail) for an empty or malformed pattern (an
 * unclosed "[", a trailing "\"), or one longer than KH_PATTERN_MAX_LEN. */
kh_err kh_pattern_set_add(kh_pattern_set *s, const char *pat, bool icase);
/* Only checks that pat compiles (same errors as kh_pattern_set_add). */
kh_err kh_pattern_check(const char *pat);
/* Number of patterns in s (0 for NULL). */
size_t kh_pattern_set_count(const kh_pattern_set *s);
/* path: len bytes, components separated by "/" (empty ones are skipped).
 * True if the last pattern that matches is not negated.  False for an
 * empty or NULL set. */
bool kh_pattern_set_excludes(const kh_pattern_set *s, const char *path, size_t len);
/* For include lists (restore --include): true if any pattern of s matches
 * path, negated or not; matched[i] is set for every pattern i that does
 * (matched may be NULL; it holds kh_pattern_set_count(s) entries). */
bool kh_pattern_set_match_each(const kh_pattern_set *s, const char *path, size_t len,
                               bool *matched);

#endif
