/* Test-only fault injection (fault.h). */
#include "common/fault.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int armed = -1; /* -1: environment not read yet, 0: off, 1: on */
static _Atomic(const char *) arm_prefix;
static char env_prefix[64];
static atomic_ulong calls, nth_call;
static atomic_bool fired;

static atomic_int action; /* what a fired point does (env only): enum below */
enum { ACT_FAIL, ACT_STOP, ACT_KILL };

/* KH_FAULT="PREFIX:N" or "PREFIX:N:stop" / "PREFIX:N:kill" */
static void arm_from_env(void)
{
  const char *s = getenv("KH_FAULT");
  const char *colon = s ? strchr(s, ':') : NULL;
  int on = 0;
  if (colon && (size_t)(colon - s) < sizeof env_prefix) {
    char *end;
    unsigned long n = strtoul(colon + 1, &end, 10);
    int act = -1;
    if (*end == '\0')
      act = ACT_FAIL;
    else if (!strcmp(end, ":stop"))
      act = ACT_STOP;
    else if (!strcmp(end, ":kill"))
      act = ACT_KILL;
    if (act >= 0 && n > 0 && end != colon + 1) {
      snprintf(env_prefix, sizeof env_prefix, "%.*s", (int)(colon - s), s);
      arm_prefix = env_prefix;
      atomic_store(&nth_call, n);
      atomic_store(&action, act);
      on = 1;
    }
  }
  int expect = -1;
  atomic_compare_exchange_strong(&armed, &expect, on);
}

/* With KH_FAULT_LOG=FILE, a fired point appends "NAME N" to FILE: a CLI
 * test cannot otherwise tell a fault that fired and was absorbed from one
 * that was never reached. */
static void note_fired(const char *name, unsigned long n)
{
  const char *log = getenv("KH_FAULT_LOG");
  if (!log || !*log)
    return;
  char line[128];
  int l = snprintf(line, sizeof line, "%s %lu\n", name, n);
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return;
  if (l > 0 && write(fd, line, (size_t)l) != l) {
    /* nothing to do: the test then sees no record and fails */
  }
  close(fd);
}

bool kh_fault_point(const char *name)
{
  int a = atomic_load_explicit(&armed, memory_order_acquire);
  if (a < 0) {
    arm_from_env();
    a = atomic_load(&armed);
  }
  if (a == 0)
    return false;
  const char *pre = arm_prefix;
  if (!pre || strncmp(name, pre, strlen(pre)) != 0)
    return false;
  unsigned long n = atomic_fetch_add(&calls, 1) + 1;
  if (n != atomic_load(&nth_call))
    return false;
  atomic_store(&fired, true);
  note_fired(name, n);
  switch (atomic_load(&action)) {
  case ACT_STOP:
    raise(SIGSTOP); /* a test looks at the process here, then SIGCONT */
    return false;
  case ACT_KILL:
    raise(SIGKILL); /* dies here, as kill -9 at this exact point would */
    return false;
  }
  return true;
}

void kh_fault_arm(const char *prefix, unsigned long nth)
{
  atomic_store(&armed, 0);
  arm_prefix = prefix;
  atomic_store(&calls, 0);
  atomic_store(&fired, false);
  atomic_store(&nth_call, nth);
  atomic_store(&action, ACT_FAIL);
  atomic_store_explicit(&armed, nth && prefix ? 1 : 0, memory_order_release);
}

unsigned long kh_fault_calls(void) { return atomic_load(&calls); }

bool kh_fault_fired(void) { return atomic_load(&fired); }
