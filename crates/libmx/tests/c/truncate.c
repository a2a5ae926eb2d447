/* Truncated receives (Open-MX's truncated test): lengths 10, 120, 20000
 * and 1 MiB into half-size buffers, once with the receives posted first
 * and once unexpected (mx_probe, then the receive). The receive completes
 * TRUNCATED with xfer_length = half and the first half intact; the
 * sender's xfer_length is halved (and its status TRUNCATED) only for
 * lengths above 32768 (rendezvous). Both count error-handler calls.
 *   truncate recv EID         receiver (prints "ready")
 *   truncate send HOST EID    sender
 *   truncate recv-fatal EID   default (fatal) handler: the first truncated
 *                             receive must end the process
 *   truncate send-one HOST EID  one 10-byte message
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

static const uint32_t lens[] = {10, 120, 20000, 1048576};
#define N 4
#define R(round, i) (((uint64_t)(round) << 32) | (uint64_t)(i))

static int handler_calls;
static mx_return_t counting(char *msg, mx_return_t ret) {
  (void)msg;
  handler_calls++;
  return ret;
}

static void check_recv(mx_status_t st, uint8_t *buf, uint32_t len, uint64_t match) {
  EXPECT(st.code == MX_STATUS_TRUNCATED && st.msg_length == len && st.xfer_length == len / 2,
         "receive of %u: %s, xfer %u, msg %u", len, mx_strstatus(st.code), st.xfer_length,
         st.msg_length);
  mxt_verify(buf, len / 2, match, "truncated message");
}

static int receiver(uint32_t eid, int fatal) {
  if (!fatal) mx_set_error_handler(counting);
  mx_endpoint_t ep = mxt_open(eid, NULL, 0);
  uint8_t *bufs[N];
  mx_request_t reqs[N];
  for (int i = 0; i < N; i++) {
    bufs[i] = mxt_alloc(lens[i] / 2);
    CHECK(mxt_irecv(ep, bufs[i], lens[i] / 2, R(1, i), MX_MATCH_MASK_NONE, &reqs[i]));
  }
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < N; i++) {
    mx_status_t st = mxt_wait(ep, &reqs[i], 20000, "round 1 receive");
    if (fatal) {
      printf("survived a truncated receive\n");
      return 1;
    }
    check_recv(st, bufs[i], lens[i], R(1, i));
  }
  for (int i = 0; i < N; i++) {
    mx_status_t st;
    uint32_t result;
    CHECK(mx_probe(ep, 20000, R(2, i), MX_MATCH_MASK_NONE, &st, &result));
    EXPECT(result == 1 && st.msg_length == lens[i] && st.xfer_length == lens[i], "probe %d", i);
    memset(bufs[i], 0, lens[i] / 2);
    CHECK(mxt_irecv(ep, bufs[i], lens[i] / 2, R(2, i), MX_MATCH_MASK_NONE, &reqs[i]));
    st = mxt_wait(ep, &reqs[i], 20000, "round 2 receive");
    check_recv(st, bufs[i], lens[i], R(2, i));
  }
  EXPECT(handler_calls == 2 * N, "error handler called %d times for %d truncations",
         handler_calls, 2 * N);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("truncate-recv: ok\n");
  return 0;
}

static int sender(const char *host, uint32_t eid, int one) {
  mx_set_error_handler(counting);
  mx_endpoint_t ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  uint8_t *buf = mxt_alloc(1048576);
  for (int round = 1; round <= 2; round++) {
    for (int i = 0; i < N; i++) {
      mx_request_t req;
      mxt_fill(buf, lens[i], R(round, i));
      CHECK(mxt_isend(ep, buf, lens[i], dest, R(round, i), 0, &req));
      mx_status_t st = mxt_wait(ep, &req, 20000, "send");
      if (one) goto done;
      uint32_t want = lens[i] > 32768 ? lens[i] / 2 : lens[i];
      mx_status_code_t code = lens[i] > 32768 ? MX_STATUS_TRUNCATED : MX_STATUS_SUCCESS;
      printf("send of %u: %s, xfer %u\n", lens[i], mx_strstatus(st.code), st.xfer_length);
      EXPECT(st.code == code && st.xfer_length == want, "send of %u: %s, xfer %u", lens[i],
             mx_strstatus(st.code), st.xfer_length);
    }
  }
  EXPECT(handler_calls == 2, "error handler called %d times for 2 truncated sends",
         handler_calls);
done:
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("truncate-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(60);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]), 0);
  if (argc == 3 && strcmp(argv[1], "recv-fatal") == 0)
    return receiver((uint32_t)atoi(argv[2]), 1);
  if (argc == 4 && strcmp(argv[1], "send") == 0)
    return sender(argv[2], (uint32_t)atoi(argv[3]), 0);
  if (argc == 4 && strcmp(argv[1], "send-one") == 0)
    return sender(argv[2], (uint32_t)atoi(argv[3]), 1);
  fprintf(stderr, "usage: truncate recv|recv-fatal EID | send|send-one HOST EID\n");
  return 64;
}
