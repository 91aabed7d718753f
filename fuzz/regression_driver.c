/* Replays every file of a corpus directory through LLVMFuzzerTestOneInput
 * without libFuzzer (zstd's regression_driver idea), so `make check` runs
 * the corpus under the normal (or sanitizer) build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  uint8_t *buf = malloc(1);
  size_t len = 0, cap = 1;
  if (!buf) {
    fclose(f);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) { free(buf); fclose(f); return -1; }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

int main(int argc, char **argv)
{
  int files = 0;
  /* also try a few fixed degenerate inputs, corpus or not */
  /* libFuzzer always passes a valid pointer, even for size 0 */
  static const uint8_t zeros[64];
  LLVMFuzzerTestOneInput(zeros, 0);
  LLVMFuzzerTestOneInput(zeros, sizeof zeros);
  for (int i = 1; i < argc; i++) {
    DIR *d = opendir(argv[i]);
    if (!d) {
      if (run_file(argv[i]) == 0)
        files++;
      continue;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.')
        continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
      if (run_file(path) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        closedir(d);
        return 1;
      }
      files++;
    }
    closedir(d);
  }
  printf("replayed %d corpus files\n", files);
  return files > 0 ? 0 : 1; /* an empty corpus is a defect */
}
