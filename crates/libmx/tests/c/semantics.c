/* The completion and request calls checked one by one against what MX
 * documents and what Open-MX's library does (docs/C-ABI.md, "Semantics
 * audit"): two endpoints A and B of this process, connected both ways,
 * plus a stopped peer that never answers.
 *   semantics    prints "checked: <what>" per section, "semantics: ok"
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define EID_A 3
#define EID_B 4
#define EID_STOPPED 5
#define BIG (1u << 20)

static mx_endpoint_t A, B;
static mx_endpoint_addr_t a2b, b2a; /* A's address of B, B's of A */

static void checked(const char *what) {
  printf("checked: %s\n", what);
  fflush(stdout);
}

/* Send `len` bytes from `from` to `to` with `match` and wait for it. */
static void send_wait(mx_endpoint_t from, mx_endpoint_addr_t to, void *buf, uint32_t len,
                      uint64_t match) {
  mx_request_t req;
  CHECK(mxt_isend(from, buf, len, to, match, 0, &req));
  mx_status_t st = mxt_wait(from, &req, 10000, "send");
  EXPECT(st.code == MX_STATUS_SUCCESS, "send %#" PRIx64 ": status %d", match, (int)st.code);
}

/* Wait until `ep` has a finished request (mx_peek); returns it. */
static mx_request_t peek_wait(mx_endpoint_t ep) {
  mx_request_t r = NULL;
  uint32_t result = 0;
  CHECK(mx_peek(ep, 10000 * mxt_slow(), &r, &result));
  EXPECT(result == 1 && r != NULL, "nothing finished within 10 s");
  return r;
}

/* Nothing finished on `ep` (after making progress for `ms`). */
static void nothing_finished(mx_endpoint_t ep, uint32_t ms, const char *what) {
  mx_request_t r = NULL;
  uint32_t result = 0;
  CHECK(mx_peek(ep, ms, &r, &result));
  EXPECT(result == 0, "%s: a request finished (%p)", what, (void *)r);
  mx_status_t st;
  CHECK(mx_test_any(ep, 0, 0, &st, &result));
  EXPECT(result == 0, "%s: test_any reported match %#" PRIx64, what, st.match_info);
}

static void check_peek(void) {
  char buf[64] = "peek", rb[64];
  mx_request_t r, p;
  uint32_t result = 9;
  mx_status_t st;
  CHECK(mx_ipeek(A, &p, &result));
  EXPECT(result == 0, "ipeek on an idle endpoint");
  /* mx_peek times out with result 0 after about its timeout. */
  double t0 = mxt_now();
  CHECK(mx_peek(A, 200, &p, &result));
  double took = mxt_now() - t0;
  EXPECT(result == 0 && took >= 0.18, "peek(200 ms): result %u after %.3f s", result, took);
  /* A finished receive is peeked, not completed: ipeek again finds it,
     mx_test completes it, then nothing is left. */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x100, MX_MATCH_MASK_NONE, &r));
  send_wait(A, a2b, buf, 5, 0x100);
  p = peek_wait(B);
  EXPECT(p == r, "peek returned %p, the receive is %p", (void *)p, (void *)r);
  CHECK(mx_ipeek(B, &p, &result));
  EXPECT(result == 1 && p == r, "the peeked receive was consumed");
  CHECK(mx_test(B, &p, &st, &result));
  EXPECT(result == 1 && st.match_info == 0x100 && st.xfer_length == 5, "test after peek");
  CHECK(mx_ipeek(B, &p, &result));
  EXPECT(result == 0, "ipeek after the test");
  /* Sends are finished requests too. */
  CHECK(mxt_isend(A, buf, 5, a2b, 0x101, 0, &r));
  p = peek_wait(A);
  EXPECT(p == r, "a finished send is not peeked");
  st = mxt_wait(A, &r, 1000, "peeked send");
  EXPECT(st.match_info == 0x101, "send status match %#" PRIx64, st.match_info);
  /* (its message is left unexpected at B: take it) */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x101, MX_MATCH_MASK_NONE, &r));
  mxt_wait(B, &r, 10000, "receive 0x101");
  checked("mx_ipeek, mx_peek (timeout, receives and sends, not completed)");
}

static void check_forget(void) {
  char buf[64] = "forget", rb[64];
  mx_request_t r, r2;
  uint32_t result;
  mx_status_t st;
  /* A pending receive: freed on completion, never reported; it still
     takes its message (nothing is left unexpected). */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x200, MX_MATCH_MASK_NONE, &r));
  CHECK(mx_forget(B, &r));
  EXPECT(r == NULL, "mx_forget leaves the handle (Open-MX sets it to NULL)");
  send_wait(A, a2b, buf, 7, 0x200);
  nothing_finished(B, 300, "forgotten receive");
  CHECK(mx_iprobe(B, 0x200, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 0, "the forgotten receive did not take its message");
  EXPECT(strcmp(rb, "forget") == 0, "the forgotten receive's data: %.8s", rb);
  /* A pending send (synchronous: pending until B matches it). */
  CHECK(mxt_isend(A, buf, 7, a2b, 0x201, 1, &r));
  CHECK(mx_forget(A, &r));
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x201, MX_MATCH_MASK_NONE, &r2));
  mxt_wait(B, &r2, 10000, "receive of the forgotten issend");
  nothing_finished(A, 300, "forgotten send");
  /* A finished request: forgetting it drops the completion. */
  CHECK(mxt_isend(A, buf, 7, a2b, 0x202, 0, &r));
  r2 = peek_wait(A);
  EXPECT(r2 == r, "peek");
  CHECK(mx_forget(A, &r));
  nothing_finished(A, 50, "forgotten finished send");
  EXPECT_RET(mx_test(A, &r2, &st, &result), MX_BAD_REQUEST);
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x202, MX_MATCH_MASK_NONE, &r));
  mxt_wait(B, &r, 10000, "receive 0x202");
  checked("mx_forget (pending receive, pending send, finished request)");
}

static void check_cancel(uint64_t nic) {
  char buf[64] = "cancel", rb[64];
  mx_request_t r, r2;
  uint32_t result;
  mx_status_t st;
  /* A posted receive: cancelled, freed, the handle NULL; its message then
     arrives unexpected. */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x300, MX_MATCH_MASK_NONE, &r));
  r2 = r;
  CHECK(mx_cancel(B, &r, &result));
  EXPECT(result == 1 && r == NULL, "receive: result %u, handle %p", result, (void *)r);
  EXPECT_RET(mx_test(B, &r2, &st, &result), MX_BAD_REQUEST);
  send_wait(A, a2b, buf, 7, 0x300);
  CHECK(mx_probe(B, 10000, 0x300, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1, "the cancelled receive took its message");
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x300, MX_MATCH_MASK_NONE, &r));
  mxt_wait(B, &r, 10000, "receive 0x300");
  /* A send cannot be cancelled: MX_BAD_REQUEST (as MX and Open-MX), the
     handle stays valid and the send completes as usual. */
  CHECK(mxt_isend(A, buf, 7, a2b, 0x301, 1, &r));
  EXPECT_RET(mx_cancel(A, &r, &result), MX_BAD_REQUEST);
  EXPECT(r != NULL, "send: the handle survives a refused cancel");
  CHECK(mxt_isend(A, buf, 7, a2b, 0x302, 0, &r2));
  mxt_wait(A, &r2, 10000, "eager send");
  EXPECT_RET(mx_cancel(A, &r2, &result), MX_BAD_REQUEST); /* taken: no request */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x301, MX_MATCH_MASK_NONE, &r2));
  mxt_wait(B, &r2, 10000, "receive 0x301");
  st = mxt_wait(A, &r, 10000, "uncancelled issend");
  EXPECT(st.code == MX_STATUS_SUCCESS, "issend status %d", (int)st.code);
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x302, MX_MATCH_MASK_NONE, &r2));
  mxt_wait(B, &r2, 10000, "receive 0x302");
  /* A matched receive, finished but not taken: result 0, still testable. */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x303, MX_MATCH_MASK_NONE, &r));
  send_wait(A, a2b, buf, 7, 0x303);
  EXPECT(peek_wait(B) == r, "peek");
  CHECK(mx_cancel(B, &r, &result));
  EXPECT(result == 0 && r != NULL, "finished receive: result %u", result);
  mxt_wait(B, &r, 1000, "finished receive");
  /* An iconnect nobody answers: cancelled; one that was answered: 0. */
  CHECK(mx_iconnect(A, nic, EID_STOPPED, MXT_KEY, 0x304, NULL, &r));
  nothing_finished(A, 100, "iconnect to a stopped peer");
  CHECK(mx_cancel(A, &r, &result));
  EXPECT(result == 1 && r == NULL, "iconnect: result %u", result);
  CHECK(mx_iconnect(A, nic, EID_B, MXT_KEY, 0x305, NULL, &r));
  EXPECT(peek_wait(A) == r, "answered iconnect not peeked");
  CHECK(mx_cancel(A, &r, &result));
  EXPECT(result == 0 && r != NULL, "answered iconnect: result %u", result);
  st = mxt_wait(A, &r, 1000, "answered iconnect");
  EXPECT(st.code == MX_STATUS_SUCCESS && st.match_info == 0x305, "iconnect status %d",
         (int)st.code);
  checked("mx_cancel (posted/finished receive, send, unanswered/answered iconnect)");
}

static void check_context(uint64_t nic) {
  char buf[64] = "ctx", rb[64];
  int tags[3];
  mx_request_t r[3];
  void *c = NULL;
  mx_status_t st;
  mx_segment_t seg = {buf, 4};
  CHECK(mx_isend(A, &seg, 1, a2b, 0x400, &tags[0], &r[0]));
  mx_segment_t rseg = {rb, sizeof rb};
  CHECK(mx_irecv(B, &rseg, 1, 0x400, MX_MATCH_MASK_NONE, &tags[1], &r[1]));
  CHECK(mx_iconnect(A, nic, EID_B, MXT_KEY, 0x401, &tags[2], &r[2]));
  for (int i = 0; i < 3; i++) {
    CHECK(mx_context(&r[i], &c));
    EXPECT(c == &tags[i], "context of request %d: %p", i, c);
  }
  for (int i = 0; i < 3; i++) {
    mx_endpoint_t ep = i == 1 ? B : A;
    mx_request_t keep = r[i];
    st = mxt_wait(ep, &r[i], 10000, "context request");
    EXPECT(st.context == &tags[i], "status context of request %d", i);
    EXPECT_RET(mx_context(&keep, &c), MX_BAD_REQUEST);
  }
  checked("mx_context (send, receive, iconnect; status.context; taken requests)");
}

static void check_ibuffered(void) {
  static char big[BIG];
  char rb[64];
  mx_request_t r;
  uint32_t result = 9;
  const uint32_t lens[] = {8, 100, 8000, BIG};
  for (int i = 0; i < 4; i++) {
    CHECK(mxt_isend(A, big, lens[i], a2b, 0x500 + (uint64_t)i, 0, &r));
    double t0 = mxt_now();
    do {
      CHECK(mx_ibuffered(A, &r, &result));
    } while (!result && lens[i] < BIG && mxt_now() - t0 < 5.0);
    EXPECT(result == (lens[i] < BIG), "ibuffered(%u bytes) = %u", lens[i], result);
    mx_request_t rr;
    char *rbuf = mxt_alloc(lens[i]);
    CHECK(mxt_irecv(B, rbuf, lens[i], 0x500 + (uint64_t)i, MX_MATCH_MASK_NONE, &rr));
    mxt_wait(B, &rr, 10000, "receive of the ibuffered send");
    mxt_wait(A, &r, 10000, "ibuffered send");
    free(rbuf);
  }
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x510, MX_MATCH_MASK_NONE, &r));
  EXPECT_RET(mx_ibuffered(B, &r, &result), MX_BAD_REQUEST);
  CHECK(mx_cancel(B, &r, &result));
  checked("mx_ibuffered (tiny, small, medium 1; large 0; receive BAD_REQUEST)");
}

static void check_probe(void) {
  char buf[64] = "probe", rb[64];
  mx_status_t st;
  uint32_t result;
  const uint64_t m[3] = {0x12340001ull, 0x12340002ull, 0x56780001ull};
  for (int i = 0; i < 3; i++) send_wait(A, a2b, buf, (uint32_t)(10 + i), m[i]);
  CHECK(mx_probe(B, 10000, m[2], MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1, "third message not there");
  CHECK(mx_iprobe(B, 0x12340000ull, 0xffff0000ull, &st, &result));
  EXPECT(result == 1 && st.match_info == m[0] && st.msg_length == 10 && st.xfer_length == 10,
         "probe high mask: %u %#" PRIx64 " %u", result, st.match_info, st.msg_length);
  /* The source is A's address as B knows it. */
  uint64_t n1, n2;
  uint32_t e1, e2;
  CHECK(mx_decompose_endpoint_addr(st.source, &n1, &e1));
  CHECK(mx_decompose_endpoint_addr(b2a, &n2, &e2));
  EXPECT(n1 == n2 && e1 == e2 && e1 == EID_A, "probe source");
  CHECK(mx_iprobe(B, 0x1ull, 0xffffull, &st, &result));
  EXPECT(result == 1 && st.match_info == m[0], "low mask finds the first arrival");
  CHECK(mx_iprobe(B, 0x12340002ull, 0xffffffffull, &st, &result));
  EXPECT(result == 1 && st.match_info == m[1] && st.msg_length == 11, "exact probe");
  CHECK(mx_iprobe(B, 0x99990000ull, 0xffff0000ull, &st, &result));
  EXPECT(result == 0, "probe without a match");
  CHECK(mx_probe(B, 100, 0x99990000ull, 0xffff0000ull, &st, &result));
  EXPECT(result == 0, "blocking probe without a match");
  EXPECT_RET(mx_iprobe(B, 0x1ull, 0x0ull, &st, &result), MX_BAD_MATCH_MASK);
  EXPECT_RET(mx_probe(B, 10, 0x10001ull, 0xffffull, &st, &result), MX_BAD_MATCH_MASK);
  /* Probing consumed nothing: masked receives take them in arrival order. */
  for (int i = 0; i < 3; i++) {
    mx_request_t r;
    CHECK(mxt_irecv(B, rb, sizeof rb, 0, 0, &r));
    st = mxt_wait(B, &r, 10000, "masked receive");
    EXPECT(st.match_info == m[i], "receive %d got %#" PRIx64, i, st.match_info);
  }
  CHECK(mx_iprobe(B, 0, 0, &st, &result));
  EXPECT(result == 0, "a probed message stayed");
  checked("mx_iprobe, mx_probe (masks, arrival order, not consumed, BAD_MATCH_MASK)");
}

static void check_test_any(void) {
  char buf[64] = "any", rb[2][64], sb[64];
  mx_request_t r[2], s;
  mx_status_t st;
  uint32_t result;
  CHECK(mxt_irecv(A, rb[0], 64, 0xa1, MX_MATCH_MASK_NONE, &r[0]));
  CHECK(mxt_irecv(A, rb[1], 64, 0xa2, MX_MATCH_MASK_NONE, &r[1]));
  CHECK(mxt_isend(A, sb, 3, a2b, 0xb1, 0, &s));
  send_wait(B, b2a, buf, 3, 0xa2);
  send_wait(B, b2a, buf, 4, 0xa1);
  EXPECT(peek_wait(A) != NULL, "peek");
  /* Nothing in the 0xc0 class; the send by its exact match info; then the
     receives of class 0xa0 in completion order. */
  CHECK(mx_wait_any(A, 100, 0xc0, 0xf0, &st, &result));
  EXPECT(result == 0, "wait_any(0xc0/0xf0) found %#" PRIx64, st.match_info);
  CHECK(mx_wait_any(A, 10000, 0xb1, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1 && st.match_info == 0xb1 && st.xfer_length == 3, "the send: %#" PRIx64,
         st.match_info);
  double t0 = mxt_now();
  uint64_t order[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    do {
      CHECK(mx_test_any(A, 0xa0, 0xf0, &st, &result));
    } while (!result && mxt_now() - t0 < 10.0);
    EXPECT(result == 1, "receive %d not reported", i);
    order[i] = st.match_info;
  }
  EXPECT(order[0] == 0xa2 && order[1] == 0xa1, "completion order %#" PRIx64 " %#" PRIx64,
         order[0], order[1]);
  EXPECT_RET(mx_test(A, &r[0], &st, &result), MX_BAD_REQUEST);
  EXPECT_RET(mx_test(A, &s, &st, &result), MX_BAD_REQUEST);
  CHECK(mx_test_any(A, 0, 0, &st, &result));
  EXPECT(result == 0, "left over: %#" PRIx64, st.match_info);
  CHECK(mxt_irecv(B, rb[0], 64, 0xb1, MX_MATCH_MASK_NONE, &r[0]));
  mxt_wait(B, &r[0], 10000, "receive 0xb1");
  checked("mx_test_any, mx_wait_any (masks over sends and receives, completion order)");
}

static void check_addr_context(uint64_t nic) {
  char buf[64] = "addr", rb[64];
  void *c = (void *)1;
  int ta, tb;
  mx_request_t r;
  mx_status_t st;
  CHECK(mx_get_endpoint_addr_context(a2b, &c));
  EXPECT(c == NULL, "initial context %p", c);
  CHECK(mx_set_endpoint_addr_context(a2b, &ta));
  CHECK(mx_set_endpoint_addr_context(b2a, &tb));
  /* Every copy, and the address a later connect returns, name the same
     partner. */
  mx_endpoint_addr_t copy = a2b, again;
  CHECK(mx_get_endpoint_addr_context(copy, &c));
  EXPECT(c == &ta, "copy's context %p", c);
  CHECK(mx_connect(A, nic, EID_B, MXT_KEY, 10000, &again));
  CHECK(mx_get_endpoint_addr_context(again, &c));
  EXPECT(c == &ta, "reconnected address's context %p", c);
  /* The source of a received message carries the sender's context (what
     MPICH's netmod reads to find its connection). */
  CHECK(mxt_irecv(B, rb, sizeof rb, 0x600, MX_MATCH_MASK_NONE, &r));
  send_wait(A, a2b, buf, 5, 0x600);
  st = mxt_wait(B, &r, 10000, "receive 0x600");
  CHECK(mx_get_endpoint_addr_context(st.source, &c));
  EXPECT(c == &tb, "status.source's context %p, want %p", c, (void *)&tb);
  /* Each endpoint keeps its own contexts. */
  mx_endpoint_addr_t me;
  CHECK(mx_get_endpoint_addr(A, &me));
  CHECK(mx_get_endpoint_addr_context(me, &c));
  EXPECT(c == NULL, "own address's context %p", c);
  checked("endpoint address contexts (copies, reconnect, status.source, per endpoint)");
}

/* The unexpected handler. */
static struct {
  int calls;
  int posted;
  mx_request_t req;
  char buf[64];
} H;

static mx_unexp_handler_action_t handler(void *ctx, mx_endpoint_addr_t source, uint64_t match,
                                         uint32_t length, void *data) {
  (void)source;
  EXPECT(ctx == &H, "handler context %p", ctx);
  H.calls++;
  switch (match) {
  case 0x700: /* post the receive from inside, as MPICH's netmod does */
    EXPECT(data != NULL && length == 9 && memcmp(data, "unexpect", 9) == 0, "tiny data");
    CHECK(mxt_irecv(B, H.buf, sizeof H.buf, 0x700, MX_MATCH_MASK_NONE, &H.req));
    H.posted = 1;
    return MX_RECV_CONTINUE;
  case 0x701: /* dropped */
    return MX_RECV_FINISHED;
  default: /* queued as unexpected */
    return MX_RECV_CONTINUE;
  }
}

static void check_unexp_handler(void) {
  char buf[64] = "unexpect";
  mx_status_t st;
  uint32_t result;
  memset(&H, 0, sizeof H);
  CHECK(mx_register_unexp_handler(B, handler, &H));
  send_wait(A, a2b, buf, 9, 0x700);
  double t0 = mxt_now();
  while (!H.posted && mxt_now() - t0 < 10.0) CHECK(mx_progress(B));
  EXPECT(H.posted, "handler not called");
  st = mxt_wait(B, &H.req, 10000, "receive posted by the handler");
  EXPECT(st.xfer_length == 9 && strcmp(H.buf, "unexpect") == 0, "handler's receive");
  send_wait(A, a2b, buf, 9, 0x701);
  send_wait(A, a2b, buf, 9, 0x702);
  CHECK(mx_probe(B, 10000, 0x702, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1, "CONTINUE without a receive: not queued");
  CHECK(mx_iprobe(B, 0x701, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 0, "FINISHED: the message was kept");
  EXPECT(H.calls == 3, "handler calls %d", H.calls);
  mx_request_t r;
  CHECK(mxt_irecv(B, H.buf, sizeof H.buf, 0x702, MX_MATCH_MASK_NONE, &r));
  mxt_wait(B, &r, 10000, "receive 0x702");
  EXPECT(H.calls == 3, "a posted receive called the handler");

  /* Disabled progression: no handler call from any call until reenabled
     (Open-MX stops all progress); disabling twice does not nest. */
  CHECK(mx_disable_progression(B));
  CHECK(mx_disable_progression(B));
  send_wait(A, a2b, buf, 9, 0x703);
  t0 = mxt_now();
  while (mxt_now() - t0 < 0.3) {
    CHECK(mx_progress(B));
    CHECK(mx_iprobe(B, 0x703, MX_MATCH_MASK_NONE, &st, &result));
    mxt_sleep_ms(5);
  }
  EXPECT(H.calls == 3, "the handler ran while progression was disabled");
  CHECK(mx_reenable_progression(B));
  CHECK(mx_probe(B, 10000, 0x703, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1 && H.calls == 4, "after reenable: probe %u, calls %d", result, H.calls);
  CHECK(mxt_irecv(B, H.buf, sizeof H.buf, 0x703, MX_MATCH_MASK_NONE, &r));
  mxt_wait(B, &r, 10000, "receive 0x703");
  CHECK(mx_register_unexp_handler(B, NULL, NULL));
  checked("unexpected handler (CONTINUE with a receive posted inside, FINISHED, queued), "
          "mx_disable_progression / mx_reenable_progression");
}

int main(void) {
  mxt_watchdog(120);
  setvbuf(stdout, NULL, _IOLBF, 0);
  mxt_stopped_peer(EID_STOPPED, 1);
  CHECK(mx_init());
  mx_set_error_handler(MX_ERRORS_RETURN);
  CHECK(mx_open_endpoint(MX_ANY_NIC, EID_A, MXT_KEY, NULL, 0, &A));
  CHECK(mx_open_endpoint(MX_ANY_NIC, EID_B, MXT_KEY, NULL, 0, &B));
  uint64_t nic;
  uint32_t eid;
  mxt_whoami(A, &nic, &eid);
  CHECK(mx_connect(A, nic, EID_B, MXT_KEY, 10000, &a2b));
  CHECK(mx_connect(B, nic, EID_A, MXT_KEY, 10000, &b2a));
  check_peek();
  check_forget();
  check_cancel(nic);
  check_context(nic);
  check_ibuffered();
  check_probe();
  check_test_any();
  check_addr_context(nic);
  check_unexp_handler();
  CHECK(mx_close_endpoint(A));
  CHECK(mx_close_endpoint(B));
  CHECK(mx_finalize());
  printf("semantics: ok\n");
  return 0;
}
