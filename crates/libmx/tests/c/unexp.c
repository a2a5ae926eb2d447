/* The unexpected-message handler (Open-MX's unexpected handler test).
 *   unexp recv EID        receiver (prints "ready")
 *   unexp send HOST EID   sender
 * Round 1 (match 1<<32|i), lengths 0, 16, 100, 1024, 10000, 1 MiB: the
 * handler records data_if_available (non-NULL exactly for tiny, small and
 * single-fragment medium messages, and then equal to the payload) and
 * returns CONTINUE; the receiver posts receives afterwards and checks the
 * bytes. Round 2 (match 2<<32|i): the handler returns FINISHED: the
 * messages are dropped; the sender sees TRUNCATED (xfer 0) for the
 * synchronous and large ones, SUCCESS for the eager ones. Round 3 (match
 * 3<<32|i): the handler posts the receive itself (mx_irecv inside the
 * handler) and returns CONTINUE; inside it mx_close_endpoint fails with
 * MX_CLOSE_IN_HANDLER.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define R1 (1ull << 32)
#define R2 (2ull << 32)
#define R3 (3ull << 32)
static const uint32_t lens[] = {0, 16, 100, 1024, 10000, 1048576};
#define N 6

static mx_endpoint_t ep;
static int seen1, seen2, seen3, had_data[N], data_ok[N], close_ret = -1, decompose_ok;
static uint8_t *r3buf[2];
static mx_request_t r3req[2];

static mx_unexp_handler_action_t handler(void *ctx, mx_endpoint_addr_t source, uint64_t match,
                                         uint32_t length, void *data) {
  EXPECT(ctx == (void *)&seen1, "handler context");
  uint64_t round = match & ~0xffffffffull;
  int i = (int)(match & 0xff);
  if (round == R1) {
    EXPECT(length == lens[i], "round 1 message %d: length %u", i, length);
    had_data[i] = data != NULL;
    data_ok[i] = data == NULL || mxt_check_at(data, 0, length, match) == length;
    __atomic_add_fetch(&seen1, 1, __ATOMIC_SEQ_CST);
    return MX_RECV_CONTINUE;
  }
  if (round == R2) {
    __atomic_add_fetch(&seen2, 1, __ATOMIC_SEQ_CST);
    return MX_RECV_FINISHED;
  }
  EXPECT(round == R3 && i < 2, "unknown message %" PRIx64, match);
  if (i == 0) {
    close_ret = (int)mx_close_endpoint(ep);
    uint64_t nic;
    uint32_t eid;
    decompose_ok = mx_decompose_endpoint_addr(source, &nic, &eid) == MX_SUCCESS;
  }
  r3buf[i] = mxt_alloc(length);
  CHECK(mxt_irecv(ep, r3buf[i], length, match, MX_MATCH_MASK_NONE, &r3req[i]));
  __atomic_add_fetch(&seen3, 1, __ATOMIC_SEQ_CST);
  return MX_RECV_CONTINUE;
}

static int receiver(uint32_t eid) {
  mx_set_error_handler(MX_ERRORS_RETURN);
  ep = mxt_open(eid, NULL, 0);
  CHECK(mx_register_unexp_handler(ep, handler, &seen1));
  printf("ready\n");
  fflush(stdout);
  double t0 = mxt_now();
  while (__atomic_load_n(&seen1, __ATOMIC_SEQ_CST) < N ||
         __atomic_load_n(&seen2, __ATOMIC_SEQ_CST) < 5 ||
         __atomic_load_n(&seen3, __ATOMIC_SEQ_CST) < 2) {
    CHECK(mx_progress(ep));
    mxt_sleep_ms(1);
    EXPECT(mxt_now() - t0 < 30, "handler saw %d/%d/%d messages", seen1, seen2, seen3);
  }
  for (int i = 0; i < N; i++) {
    int tiny_small_single = lens[i] <= 8192;
    printf("length %u: data_if_available %s\n", lens[i], had_data[i] ? "set" : "NULL");
    EXPECT(had_data[i] == tiny_small_single, "length %u: data_if_available %s", lens[i],
           had_data[i] ? "set" : "NULL");
    EXPECT(data_ok[i], "length %u: data_if_available has the wrong bytes", lens[i]);
  }
  /* Round 1 was queued as unexpected: receive it now. */
  for (int i = 0; i < N; i++) {
    uint8_t *buf = mxt_alloc(lens[i]);
    mx_request_t req;
    CHECK(mxt_irecv(ep, buf, lens[i], R1 | (uint64_t)i, MX_MATCH_MASK_NONE, &req));
    mx_status_t st = mxt_wait(ep, &req, 20000, "round 1 receive");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == lens[i], "round 1 %d: %d %u", i,
           (int)st.code, st.xfer_length);
    mxt_verify(buf, lens[i], R1 | (uint64_t)i, "round 1 message");
    free(buf);
  }
  /* Round 2 was dropped. */
  mx_status_t st;
  uint32_t result = 1;
  CHECK(mx_iprobe(ep, R2, ~0xffffffffull, &st, &result));
  EXPECT(result == 0, "a dropped message is still queued");
  /* Round 3 matched the receives posted by the handler. */
  for (int i = 0; i < 2; i++) {
    st = mxt_wait(ep, &r3req[i], 20000, "round 3 receive");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == st.msg_length, "round 3 %d", i);
    mxt_verify(r3buf[i], st.xfer_length, R3 | (uint64_t)i, "round 3 message");
    free(r3buf[i]);
  }
  EXPECT(close_ret == MX_CLOSE_IN_HANDLER, "close in handler returned %d", close_ret);
  EXPECT(decompose_ok, "decompose inside the handler failed");
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("unexp-recv: ok\n");
  return 0;
}

static int handler_calls;
static mx_return_t counting(char *msg, mx_return_t ret) {
  (void)msg;
  handler_calls++;
  return ret;
}

static int sender(const char *host, uint32_t eid) {
  mx_set_error_handler(counting);
  ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  uint8_t *bufs[N];
  mx_request_t reqs[N];
  for (int i = 0; i < N; i++) {
    bufs[i] = mxt_alloc(lens[i]);
    mxt_fill(bufs[i], lens[i], R1 | (uint64_t)i);
    CHECK(mxt_isend(ep, bufs[i], lens[i], dest, R1 | (uint64_t)i, 0, &reqs[i]));
  }
  /* Round 2: sync 16, sync 100, eager 100, medium 10000, large 1 MiB. */
  static const struct { uint32_t len; int sync; int truncated; } r2[] = {
      {16, 1, 1}, {100, 1, 1}, {100, 0, 0}, {10000, 0, 0}, {1048576, 0, 1}};
  mx_request_t reqs2[5];
  uint8_t *big = mxt_alloc(1048576);
  for (int i = 0; i < 5; i++)
    CHECK(mxt_isend(ep, big, r2[i].len, dest, R2 | (uint64_t)i, r2[i].sync, &reqs2[i]));
  mx_request_t reqs3[2];
  uint8_t *r3[2] = {mxt_alloc(1024), mxt_alloc(1048576)};
  mxt_fill(r3[0], 1024, R3);
  mxt_fill(r3[1], 1048576, R3 | 1);
  CHECK(mxt_isend(ep, r3[0], 1024, dest, R3, 0, &reqs3[0]));
  CHECK(mxt_isend(ep, r3[1], 1048576, dest, R3 | 1, 0, &reqs3[1]));
  for (int i = 0; i < N; i++) {
    mx_status_t st = mxt_wait(ep, &reqs[i], 20000, "round 1 send");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == lens[i], "round 1 send %d: %d", i,
           (int)st.code);
  }
  for (int i = 0; i < 5; i++) {
    mx_status_t st = mxt_wait(ep, &reqs2[i], 20000, "round 2 send");
    printf("round 2 send of %u (%s): %s, xfer %u\n", r2[i].len, r2[i].sync ? "sync" : "async",
           mx_strstatus(st.code), st.xfer_length);
    if (r2[i].truncated)
      EXPECT(st.code == MX_STATUS_TRUNCATED && st.xfer_length == 0, "round 2 send %d: %d", i,
             (int)st.code);
    else
      EXPECT(st.code == MX_STATUS_SUCCESS, "round 2 send %d: %d", i, (int)st.code);
  }
  for (int i = 0; i < 2; i++) {
    mx_status_t st = mxt_wait(ep, &reqs3[i], 20000, "round 3 send");
    EXPECT(st.code == MX_STATUS_SUCCESS, "round 3 send %d: %d", i, (int)st.code);
  }
  EXPECT(handler_calls == 3, "error handler called %d times for 3 truncated sends",
         handler_calls);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("unexp-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(60);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc == 4 && strcmp(argv[1], "send") == 0) return sender(argv[2], (uint32_t)atoi(argv[3]));
  fprintf(stderr, "usage: unexp recv EID | send HOST EID\n");
  return 64;
}
