/* Threads (Open-MX's multithread test, shortened), MX_ERRORS_RETURN:
 * A) 4 threads in mx_wait_any on one endpoint, each on its own match
 *    range, while the main thread sends 100 messages of each range to
 *    itself: every thread gets exactly its messages, bytes checked;
 * B) 4 threads each opening an endpoint, posting 10 receives, cancelling
 *    them (result 1), closing it, 15 times over, concurrently.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <pthread.h>

#include "mxt.h"

#define NT 4
#define PER 100

static mx_endpoint_t ep;

static void *waiter(void *arg) {
  uint64_t range = (uint64_t)(uintptr_t)arg << 32;
  for (int n = 0; n < PER; n++) {
    mx_status_t st;
    uint32_t result = 0;
    CHECK(mx_wait_any(ep, 20000, range, 0xffffffff00000000ull, &st, &result));
    EXPECT(result == 1, "waiter %" PRIx64 ": nothing after %d", range >> 32, n);
    EXPECT((st.match_info & 0xffffffff00000000ull) == range, "foreign message");
    uint8_t *buf = st.context;
    mxt_verify(buf, 200, st.match_info, "message");
    free(buf);
  }
  return NULL;
}

static void *opener(void *arg) {
  (void)arg;
  for (int round = 0; round < 15; round++) {
    mx_endpoint_t e;
    CHECK(mx_open_endpoint(MX_ANY_NIC, MX_ANY_ENDPOINT, 0, NULL, 0, &e));
    mx_request_t reqs[10];
    char buf[10][16];
    for (int i = 0; i < 10; i++) CHECK(mxt_irecv(e, buf[i], 16, (uint64_t)i, MX_MATCH_MASK_NONE, &reqs[i]));
    for (int i = 0; i < 10; i++) {
      uint32_t result = 0;
      CHECK(mx_cancel(e, &reqs[i], &result));
      EXPECT(result == 1, "receive not cancelled");
    }
    CHECK(mx_close_endpoint(e));
  }
  return NULL;
}

int main(void) {
  mxt_watchdog(60);
  mx_set_error_handler(MX_ERRORS_RETURN);
  ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  mx_endpoint_addr_t me;
  CHECK(mx_get_endpoint_addr(ep, &me));
  pthread_t th[NT];
  /* Receives are posted first; each carries its buffer as context. */
  for (int t = 0; t < NT; t++)
    for (int n = 0; n < PER; n++) {
      uint64_t match = ((uint64_t)(t + 1) << 32) | (uint64_t)n;
      uint8_t *buf = mxt_alloc(200);
      mx_segment_t seg = {buf, 200};
      mx_request_t req;
      CHECK(mx_irecv(ep, &seg, 1, match, MX_MATCH_MASK_NONE, buf, &req));
    }
  for (int t = 0; t < NT; t++)
    EXPECT(pthread_create(&th[t], NULL, waiter, (void *)(uintptr_t)(t + 1)) == 0, "thread");
  /* A finished send qualifies for mx_wait_any too (MX semantics), and the
     sends carry the waiters' match info: they leave from a second endpoint,
     whose completions the waiters never see. */
  mx_endpoint_t tx;
  CHECK(mx_open_endpoint(MX_ANY_NIC, MX_ANY_ENDPOINT, MXT_KEY, NULL, 0, &tx));
  uint64_t nic;
  uint32_t eid;
  mxt_whoami(ep, &nic, &eid);
  mx_endpoint_addr_t to;
  CHECK(mx_connect(tx, nic, eid, MXT_KEY, 10000, &to));
  uint8_t out[200];
  for (int n = 0; n < PER; n++)
    for (int t = 0; t < NT; t++) {
      uint64_t match = ((uint64_t)(t + 1) << 32) | (uint64_t)n;
      mx_request_t req;
      mxt_fill(out, 200, match);
      CHECK(mxt_isend(tx, out, 200, to, match, 0, &req));
      mxt_wait(tx, &req, 20000, "send");
    }
  for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
  printf("multithread: wait_any ok\n");
  for (int t = 0; t < NT; t++) EXPECT(pthread_create(&th[t], NULL, opener, NULL) == 0, "thread");
  for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("multithread: ok\n");
  return 0;
}
