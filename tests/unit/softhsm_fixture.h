/* A real SoftHSM2 token in a test's temporary directory: shared by the
 * PKCS#11 tests.  Needs Debian's softhsm2 (make check installs it). */
#ifndef KH_SOFTHSM_FIXTURE_H
#define KH_SOFTHSM_FIXTURE_H
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/fsutil.h"

extern char **environ;

/* Path of the SoftHSM2 module ($KH_SOFTHSM2_MODULE first), or NULL. */
static inline const char *kh_softhsm_module(void)
{
  static const char *candidates[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
  };
  const char *env = getenv("KH_SOFTHSM2_MODULE");
  if (env && *env)
    return access(env, R_OK) == 0 ? env : NULL;
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
    if (access(candidates[i], R_OK) == 0)
      return candidates[i];
  return NULL;
}

/* Run argv (PATH lookup); its exit status, or -1. */
static inline int kh_test_run(char *const argv[])
{
  pid_t pid;
  int status;
  if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
    return -1;
  if (waitpid(pid, &status, 0) != pid)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A token store under dir with one initialised token `label` (user PIN
 * 1234, SO PIN 5678); sets SOFTHSM2_CONF, which must happen before anything
 * dlopens the module (SoftHSM2 reads it in C_Initialize). */
static inline bool kh_softhsm_token(const char *dir, const char *label)
{
  char conf[512], tokens[512], text[700];
  snprintf(tokens, sizeof tokens, "%s/tokens", dir);
  snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
  if (mkdir(tokens, 0700) != 0)
    return false;
  int n = snprintf(text, sizeof text,
                   "directories.tokendir = %s\nobjectstore.backend = file\n"
                   "log.level = ERROR\nslots.removable = false\n", tokens);
  if (kh_write_file_atomic(conf, text, (size_t)n, 0600, false) != KH_OK)
    return false;
  setenv("SOFTHSM2_CONF", conf, 1);
  char *argv[] = {"softhsm2-util", "--init-token", "--free", "--label", (char *)label,
                  "--pin", "1234", "--so-pin", "5678", NULL};
  int rc = kh_test_run(argv);
  if (rc != 0)
    fprintf(stderr, "softhsm2-util --init-token exited with %d\n", rc);
  return rc == 0;
}
#endif
