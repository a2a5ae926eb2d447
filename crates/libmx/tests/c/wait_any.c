/* mx_wait_any with a context id (like mx_wait_any_test, shortened).
 *   wait_any recv EID        receiver (prints "ready")
 *   wait_any send HOST EID   sender
 * Both set MX_ERRORS_RETURN and open with MX_PARAM_CONTEXT_ID {bits 1,
 * shift 41}. The sender sends messages of 0, 64, 4096 and 131072 bytes in
 * context 1 (bit 41 set), 300 ms apart, then one in context 0; the
 * receiver has a receive posted for each and loops on mx_wait_any(100 ms)
 * with match/mask on bit 41, printing a line per timeout; the context-0
 * message must not satisfy it.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define CTX1 (1ull << 41)
static const uint32_t lens[] = {0, 64, 4096, 131072};
#define N 4

static mx_endpoint_t open_ctx(uint32_t eid) {
  mx_param_t p;
  memset(&p, 0, sizeof p);
  p.key = MX_PARAM_CONTEXT_ID;
  p.val.context_id.bits = 1;
  p.val.context_id.shift = 41;
  mx_set_error_handler(MX_ERRORS_RETURN);
  return mxt_open(eid, &p, 1);
}

static int receiver(uint32_t eid) {
  mx_endpoint_t ep = open_ctx(eid);
  uint8_t *bufs[N + 1];
  mx_request_t req;
  /* The mask must cover the context id bits. */
  EXPECT_RET(mxt_irecv(ep, NULL, 0, 0, 0xff, &req), MX_BAD_MATCHING_FOR_CONTEXT_ID_MASK);
  EXPECT_RET(mxt_irecv(ep, NULL, 0, 3, 1, &req), MX_BAD_MATCH_MASK);
  for (int i = 0; i <= N; i++) {
    uint32_t len = i < N ? lens[i] : 16;
    uint64_t match = i < N ? (CTX1 | (uint64_t)i) : 7;
    bufs[i] = mxt_alloc(len);
    CHECK(mxt_irecv(ep, bufs[i], len, match, MX_MATCH_MASK_NONE, &req));
  }
  printf("ready\n");
  fflush(stdout);
  int got = 0, timeouts = 0;
  double t0 = mxt_now();
  while (got < N) {
    mx_status_t st;
    uint32_t result = 0;
    CHECK(mx_wait_any(ep, 100, CTX1, CTX1, &st, &result));
    EXPECT(mxt_now() - t0 < 20.0, "messages did not arrive");
    if (!result) {
      printf("wait_any: timeout after %d messages\n", got);
      timeouts++;
      continue;
    }
    int i = (int)(st.match_info & 0xff);
    EXPECT((st.match_info & CTX1) && i == got, "message %d arrived as %d (match %" PRIx64 ")",
           got, i, st.match_info);
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == lens[i], "message %d: %d %u", i,
           (int)st.code, st.xfer_length);
    mxt_verify(bufs[i], lens[i], (uint64_t)i, "context-1 message");
    printf("wait_any: got %u bytes\n", lens[i]);
    got++;
  }
  /* The context-0 message arrives too, but only a context-0 wait_any
   * takes it. */
  mx_status_t st;
  uint32_t result = 0;
  CHECK(mx_wait_any(ep, 300, CTX1, CTX1, &st, &result));
  EXPECT(result == 0, "a context-0 message satisfied a context-1 wait_any");
  CHECK(mx_wait_any(ep, 10000, 0, CTX1, &st, &result));
  EXPECT(result == 1 && st.match_info == 7 && st.xfer_length == 16, "context-0 message");
  mxt_verify(bufs[N], 16, 99, "context-0 message");
  printf("wait_any: timeouts %d\n", timeouts);
  EXPECT(timeouts > 0, "never timed out");
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("wait_any-recv: ok\n");
  return 0;
}

static int sender(const char *host, uint32_t eid) {
  mx_endpoint_t ep = open_ctx(MX_ANY_ENDPOINT);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  uint8_t *buf = mxt_alloc(131072);
  mx_request_t req;
  for (int i = 0; i < N; i++) {
    mxt_sleep_ms(300);
    mxt_fill(buf, lens[i], (uint64_t)i);
    CHECK(mxt_isend(ep, buf, lens[i], dest, CTX1 | (uint64_t)i, 0, &req));
    mx_status_t st = mxt_wait(ep, &req, 20000, "send");
    EXPECT(st.code == MX_STATUS_SUCCESS, "send %d: %d", i, (int)st.code);
  }
  mxt_fill(buf, 16, 99);
  CHECK(mxt_isend(ep, buf, 16, dest, 7, 0, &req));
  mxt_wait(ep, &req, 20000, "context-0 send");
  free(buf);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("wait_any-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(60);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc == 4 && strcmp(argv[1], "send") == 0) return sender(argv[2], (uint32_t)atoi(argv[3]));
  fprintf(stderr, "usage: wait_any recv EID | send HOST EID\n");
  return 64;
}
