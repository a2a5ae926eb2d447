/* Helpers shared by the MX test programs (tests/c_programs.rs builds and
 * runs them against our libmyriexpress.so and an embedded backend).
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#ifndef MXT_H
#define MXT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <myriexpress.h>
#include <mx_extensions.h>

#define MXT_KEY 0x12345u

/* A call that must succeed. */
#define CHECK(call)                                                        \
  do {                                                                     \
    mx_return_t r_ = (call);                                               \
    if (r_ != MX_SUCCESS) {                                                \
      fprintf(stderr, "%s:%d: %s -> %d (%s)\n", __FILE__, __LINE__, #call, \
              (int)r_, mx_strerror(r_));                                   \
      exit(2);                                                             \
    }                                                                      \
  } while (0)

/* A condition that must hold. */
#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
      exit(3);                                                             \
    }                                                                      \
  } while (0)

/* A call that must return `want` (run with MX_ERRORS_RETURN). */
#define EXPECT_RET(call, want)                                             \
  do {                                                                     \
    mx_return_t r_ = (call);                                               \
    EXPECT(r_ == (want), "%s returned %d (%s), want %d (%s)", #call,       \
           (int)r_, mx_strerror(r_), (int)(want), mx_strerror(want));      \
  } while (0)

/* Deadlines are multiplied by $MXT_SLOW (default 1): the Xen test bed runs
 * these programs under CPU emulation, where everything is slower. */
static inline unsigned mxt_slow(void) {
  const char *s = getenv("MXT_SLOW");
  int k = s ? atoi(s) : 1;
  return k > 0 && k <= 1000 ? (unsigned)k : 1;
}

/* Kill the process with SIGALRM after `sec` seconds: every test has a
 * deadline of its own besides the harness's. */
static inline void mxt_watchdog(unsigned sec) { alarm(sec * mxt_slow()); }

static inline double mxt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void mxt_sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Byte i of the pattern named by `salt`. */
static inline uint8_t mxt_byte(uint64_t salt, size_t i) {
  uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + salt * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return (uint8_t)(x ^ (x >> 17));
}

/* Fill `len` bytes from message offset `off` with the pattern. */
static inline void mxt_fill_at(void *buf, size_t off, size_t len, uint64_t salt) {
  uint8_t *p = (uint8_t *)buf;
  for (size_t i = 0; i < len; i++) p[i] = mxt_byte(salt, off + i);
}

static inline void mxt_fill(void *buf, size_t len, uint64_t salt) {
  mxt_fill_at(buf, 0, len, salt);
}

/* Offset of the first byte that differs from the pattern, or `len`. */
static inline size_t mxt_check_at(const void *buf, size_t off, size_t len, uint64_t salt) {
  const uint8_t *p = (const uint8_t *)buf;
  for (size_t i = 0; i < len; i++)
    if (p[i] != mxt_byte(salt, off + i)) return i;
  return len;
}

static inline void mxt_verify(const void *buf, size_t len, uint64_t salt, const char *what) {
  size_t bad = mxt_check_at(buf, 0, len, salt);
  EXPECT(bad == len, "%s: byte %zu of %zu differs", what, bad, len);
}

static inline void *mxt_alloc(size_t len) {
  void *p = malloc(len ? len : 1);
  EXPECT(p != NULL, "malloc(%zu)", len);
  return p;
}

/* mx_init + open endpoint `eid` (MX_ANY_ENDPOINT allowed). */
static inline mx_endpoint_t mxt_open(uint32_t eid, mx_param_t *params, uint32_t n) {
  mx_endpoint_t ep;
  CHECK(mx_init());
  CHECK(mx_open_endpoint(MX_ANY_NIC, eid, MXT_KEY, params, n, &ep));
  return ep;
}

/* Our NIC id and endpoint id. */
static inline void mxt_whoami(mx_endpoint_t ep, uint64_t *nic, uint32_t *eid) {
  mx_endpoint_addr_t me;
  CHECK(mx_get_endpoint_addr(ep, &me));
  CHECK(mx_decompose_endpoint_addr(me, nic, eid));
}

/* Wait for `req` (must complete within `ms`), return its status. */
static inline mx_status_t mxt_wait(mx_endpoint_t ep, mx_request_t *req, uint32_t ms,
                                   const char *what) {
  mx_status_t st;
  uint32_t result = 0;
  ms *= mxt_slow();
  CHECK(mx_wait(ep, req, ms, &st, &result));
  EXPECT(result == 1, "%s did not complete within %u ms", what, ms);
  EXPECT(*req == NULL, "%s: request not released", what);
  return st;
}

static inline mx_return_t mxt_isend(mx_endpoint_t ep, void *buf, uint32_t len,
                                    mx_endpoint_addr_t dest, uint64_t match,
                                    int sync, mx_request_t *req) {
  mx_segment_t seg = {buf, len};
  return sync ? mx_issend(ep, &seg, 1, dest, match, NULL, req)
              : mx_isend(ep, &seg, 1, dest, match, NULL, req);
}

static inline mx_return_t mxt_irecv(mx_endpoint_t ep, void *buf, uint32_t len,
                                    uint64_t match, uint64_t mask, mx_request_t *req) {
  mx_segment_t seg = {buf, len};
  return mx_irecv(ep, &seg, 1, match, mask, NULL, req);
}

/* Stop a forked peer and wait until it is stopped (so it answers nothing
 * from now on). */
static inline void mxt_stop(pid_t pid) {
  int status;
  EXPECT(kill(pid, SIGSTOP) == 0, "SIGSTOP");
  EXPECT(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status), "peer not stopped");
}

/* Fork a peer that opens endpoint `eid` and then does nothing; returns
 * its pid once the endpoint is open, stopped with SIGSTOP if `stop`.
 * Call before mx_init (no threads yet, and the child initializes its own
 * copy of the library). The peer dies with its parent. */
static inline pid_t mxt_stopped_peer(uint32_t eid, int stop) {
  int fds[2];
  EXPECT(pipe(fds) == 0, "pipe");
  pid_t pid = fork();
  EXPECT(pid >= 0, "fork");
  if (pid == 0) {
    /* Die with the parent (even when stopped: SIGKILL), and keep none of
     * its output pipes open, so a harness reading them sees their end. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(1);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
      close(devnull);
    }
    close(fds[0]);
    mx_endpoint_t ep = mxt_open(eid, NULL, 0);
    (void)ep;
    if (write(fds[1], "r", 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(fds[1]);
  char c;
  EXPECT(read(fds[0], &c, 1) == 1, "peer did not start");
  close(fds[0]);
  if (stop) mxt_stop(pid);
  return pid;
}

static inline void mxt_kill_peer(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

#endif /* MXT_H */
