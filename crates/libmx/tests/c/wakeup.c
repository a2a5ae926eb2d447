/* mx_wakeup releases every blocked thread (like mx_wakeup_test, shortened).
 * A forked peer opens endpoint 5 and is stopped with SIGSTOP, so nothing
 * answers. Twelve threads block, two of each: mx_wait on a receive,
 * mx_probe, mx_peek, mx_connect to the stopped peer, mx_iconnect to it +
 * mx_wait, mx_issend to ourselves + mx_wait. Once all are blocked the
 * main thread calls mx_wakeup once: every call must return within 5 s
 * (result 0; mx_connect MX_TIMEOUT).
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <pthread.h>

#include "mxt.h"

#define NTHREADS 12
#define PEER_EID 5

static mx_endpoint_t ep;
static uint64_t nic;
static mx_endpoint_addr_t self_addr;
static volatile int entered, returned;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int outcome[NTHREADS]; /* 1 = as expected */

static void mark(int *counter) {
  pthread_mutex_lock(&lock);
  (*counter)++;
  pthread_mutex_unlock(&lock);
}

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg, kind = id / 2;
  mx_request_t req;
  mx_status_t st;
  uint32_t result = 7;
  mx_return_t ret = MX_SUCCESS;
  static char buf[NTHREADS][64];
  switch (kind) {
  case 0: /* a receive nobody sends to */
    CHECK(mxt_irecv(ep, buf[id], 64, 0x100 + (uint64_t)id, MX_MATCH_MASK_NONE, &req));
    mark((int *)&entered);
    ret = mx_wait(ep, &req, MX_INFINITE, &st, &result);
    break;
  case 1:
    mark((int *)&entered);
    ret = mx_probe(ep, MX_INFINITE, 0x7777, MX_MATCH_MASK_NONE, &st, &result);
    break;
  case 2:
    mark((int *)&entered);
    ret = mx_peek(ep, MX_INFINITE, &req, &result);
    break;
  case 3: {
    mx_endpoint_addr_t a;
    mark((int *)&entered);
    ret = mx_connect(ep, nic, PEER_EID, MXT_KEY, MX_INFINITE, &a);
    outcome[id] = ret == MX_TIMEOUT || ret == MX_SUCCESS;
    mark((int *)&returned);
    printf("thread %d (connect): %s\n", id, mx_strerror(ret));
    return NULL;
  }
  case 4:
    CHECK(mx_iconnect(ep, nic, PEER_EID, MXT_KEY, 0x42, NULL, &req));
    mark((int *)&entered);
    ret = mx_wait(ep, &req, MX_INFINITE, &st, &result);
    break;
  case 5:
    CHECK(mxt_isend(ep, buf[id], 64, self_addr, 0x5555, 1, &req));
    mark((int *)&entered);
    ret = mx_wait(ep, &req, MX_INFINITE, &st, &result);
    break;
  }
  outcome[id] = ret == MX_SUCCESS && result == 0;
  mark((int *)&returned);
  printf("thread %d (kind %d): %s, result %u\n", id, kind, mx_strerror(ret), result);
  return NULL;
}

int main(void) {
  mxt_watchdog(60);
  pid_t peer = mxt_stopped_peer(PEER_EID, 1);
  mx_set_error_handler(MX_ERRORS_RETURN);
  ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  CHECK(mx_get_endpoint_addr(ep, &self_addr));
  uint32_t eid;
  CHECK(mx_decompose_endpoint_addr(self_addr, &nic, &eid));
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++)
    EXPECT(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "thread");
  double t0 = mxt_now();
  while (entered < NTHREADS) {
    EXPECT(mxt_now() - t0 < 20, "threads did not start");
    mxt_sleep_ms(10);
  }
  mxt_sleep_ms(500);
  EXPECT(returned == 0, "%d calls returned before mx_wakeup", returned);
  printf("all %d threads blocked; waking up\n", NTHREADS);
  fflush(stdout);
  CHECK(mx_wakeup(ep));
  t0 = mxt_now();
  while (returned < NTHREADS) {
    EXPECT(mxt_now() - t0 < 5, "only %d of %d calls returned after mx_wakeup", returned,
           NTHREADS);
    mxt_sleep_ms(10);
  }
  printf("all returned in %.3f s\n", mxt_now() - t0);
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
    EXPECT(outcome[i], "thread %d returned the wrong thing", i);
  }
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  mxt_kill_peer(peer);
  printf("wakeup: ok\n");
  return 0;
}
