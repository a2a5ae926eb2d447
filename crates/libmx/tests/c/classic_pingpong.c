/* The classic mx_pingpong's wire protocol, played against our Rust
 * mx_pingpong (tools/mx_pingpong/tests/classic.rs runs it), written from
 * the facts of shared/spec/mx-programs.md and mx-abi.md:
 *   classic_pingpong recv EID                receiver on endpoint EID
 *   classic_pingpong send HOST EID START END INC MULT ITER WARMUP FLAGS
 *                                            sender; FLAGS: a string of
 *                                            V (verify), w (mx_wait), R (issend)
 * The sender's first message (match 0x0000222211110000) is the 108-byte
 * struct: ten big-endian u32 (start, end, inc, warmup, verify, iter,
 * do_wait, eid, use_rndv, nic_low32), a big-endian u16 nic_high16 at 40,
 * char mult[64] at 42 ("%f"), 2 bytes of padding. The receiver connects
 * back to the NIC and endpoint in it. Pings count up from match 0x1000,
 * pongs from 0, across lengths; per length of N + W loop iterations the
 * sender sends N + W + 2 pings and the receiver N + W + 1 pongs, each side
 * keeping two receives posted. Lengths: add INC, or (INC 0) multiply by
 * MULT truncating, adding 1 when that does not grow.
 *
 * Besides running the schedule, each side checks what a classic peer
 * relies on: the receiver that the parameters name the sender's own
 * address (the source of the message) and that nothing beyond the
 * schedule arrives; the sender that every pong has its length and, with
 * V, echoes its ping. Prints "classic-recv: ok" / "classic-send: ok".
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define PARAM_MATCH 0x0000222211110000ull
#define PARAMS_LEN 108
#define MAX_LEN (1u << 30)

struct run {
  uint32_t start, end, inc, warmup, verify, iter, do_wait, eid, rndv;
  uint64_t nic;
  double mult;
};

static void put32(uint8_t *b, uint32_t v) {
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint32_t next_len(const struct run *r, uint32_t len) {
  if ((int32_t)r->inc > 0) return len + r->inc;
  double grown = (double)len * r->mult;
  if (grown > (double)len && grown < 4294967296.0) return (uint32_t)grown;
  return len + 1;
}

/* Complete a request the way the run says (poll mx_test or block). */
static mx_status_t finish(mx_endpoint_t ep, mx_request_t *req, int block, const char *what) {
  if (block) return mxt_wait(ep, req, 30000, what);
  mx_status_t st;
  uint32_t result = 0;
  double t0 = mxt_now();
  while (!result) {
    CHECK(mx_test(ep, req, &st, &result));
    EXPECT(mxt_now() - t0 < 30.0 * mxt_slow(), "%s: no completion", what);
  }
  return st;
}

static mx_status_t send_wait(mx_endpoint_t ep, void *buf, uint32_t len, mx_endpoint_addr_t to,
                             uint64_t match, const struct run *r, const char *what) {
  mx_request_t req;
  CHECK(mxt_isend(ep, buf, len, to, match, (int)r->rndv, &req));
  mx_status_t st = finish(ep, &req, (int)r->do_wait, what);
  EXPECT(st.code == MX_STATUS_SUCCESS, "%s: status %d", what, (int)st.code);
  return st;
}

/* Nothing more matching `match`/`mask` arrives within half a second. */
static void expect_quiet(mx_endpoint_t ep, uint64_t match, uint64_t mask, const char *what) {
  mx_status_t st;
  uint32_t result = 0;
  CHECK(mx_probe(ep, 500, match, mask, &st, &result));
  EXPECT(!result, "%s: unexpected message match %#" PRIx64 " (%u bytes)", what, st.match_info,
         st.msg_length);
}

static int receiver(uint32_t eid) {
  mx_endpoint_t ep = mxt_open(eid, NULL, 0);
  printf("ready\n");
  fflush(stdout);
  uint8_t pb[PARAMS_LEN + 16];
  mx_request_t req;
  CHECK(mxt_irecv(ep, pb, sizeof pb, PARAM_MATCH, MX_MATCH_MASK_NONE, &req));
  mx_status_t st = mxt_wait(ep, &req, 30000, "parameters");
  EXPECT(st.code == MX_STATUS_SUCCESS && st.msg_length == PARAMS_LEN,
         "parameters: status %d, %u bytes (want %d)", (int)st.code, st.msg_length, PARAMS_LEN);
  struct run r;
  r.start = get32(pb + 0);
  r.end = get32(pb + 4);
  r.inc = get32(pb + 8);
  r.warmup = get32(pb + 12);
  r.verify = get32(pb + 16);
  r.iter = get32(pb + 20);
  r.do_wait = get32(pb + 24);
  r.eid = get32(pb + 28);
  r.rndv = get32(pb + 32);
  r.nic = (uint64_t)((uint32_t)pb[40] << 8 | pb[41]) << 32 | get32(pb + 36);
  char mult[65];
  memcpy(mult, pb + 42, 64);
  mult[64] = 0;
  r.mult = atof(mult);
  /* The address in the parameters is the sender's own. */
  uint64_t src_nic;
  uint32_t src_eid;
  CHECK(mx_decompose_endpoint_addr(st.source, &src_nic, &src_eid));
  EXPECT(src_nic == r.nic && src_eid == r.eid,
         "parameters name %012" PRIx64 " endpoint %u, the sender is %012" PRIx64 " endpoint %u",
         r.nic, r.eid, src_nic, src_eid);
  EXPECT(r.end <= MAX_LEN && r.iter < 100000 && r.warmup < 100000, "end %u iter %u warmup %u",
         r.end, r.iter, r.warmup);
  printf("params: start %u end %u inc %u mult %f warmup %u iter %u verify %u wait %u rndv %u\n",
         r.start, r.end, r.inc, r.mult, r.warmup, r.iter, r.verify, r.do_wait, r.rndv);
  fflush(stdout);
  mx_endpoint_addr_t back;
  CHECK(mx_connect(ep, r.nic, r.eid, MXT_KEY, 10000, &back));

  uint8_t *buf[2] = {mxt_alloc(r.end), mxt_alloc(r.end)};
  uint64_t sseq = 0x1000, rseq = 0;
  unsigned lengths = 0;
  for (uint32_t len = r.start; len < r.end; len = next_len(&r, len), lengths++) {
    mx_request_t rr[2];
    unsigned cur = 0;
    for (int i = 0; i < 2; i++) CHECK(mxt_irecv(ep, buf[i], len, sseq++, MX_MATCH_MASK_NONE, &rr[i]));
    for (uint32_t i = 0; i < r.iter + r.warmup; i++) {
      st = finish(ep, &rr[cur], (int)r.do_wait, "ping");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len, "ping: status %d, %u of %u",
             (int)st.code, st.xfer_length, len);
      send_wait(ep, buf[cur], len, st.source, rseq++, &r, "pong");
      CHECK(mxt_irecv(ep, buf[cur], len, sseq++, MX_MATCH_MASK_NONE, &rr[cur]));
      cur ^= 1;
    }
    for (int i = 0; i < 2; i++) {
      st = finish(ep, &rr[cur], (int)r.do_wait, "closing ping");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len,
             "closing ping: status %d, %u of %u", (int)st.code, st.xfer_length, len);
      if (i == 0) cur ^= 1;
    }
    send_wait(ep, buf[cur], len, st.source, rseq++, &r, "closing pong");
  }
  /* The sender sent exactly the schedule: no ping beyond it. */
  expect_quiet(ep, 0, 0, "after the run");
  printf("classic-recv: ok (%u lengths, %" PRIu64 " pings, %" PRIu64 " pongs)\n", lengths,
         sseq - 0x1000, rseq);
  free(buf[0]);
  free(buf[1]);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  return 0;
}

static int sender(int argc, char **argv) {
  EXPECT(argc == 11, "usage: send HOST EID START END INC MULT ITER WARMUP FLAGS");
  struct run r;
  uint32_t his_eid = (uint32_t)atoi(argv[3]);
  r.start = (uint32_t)strtoul(argv[4], NULL, 0);
  r.end = (uint32_t)strtoul(argv[5], NULL, 0);
  r.inc = (uint32_t)strtoul(argv[6], NULL, 0);
  r.mult = atof(argv[7]);
  r.iter = (uint32_t)strtoul(argv[8], NULL, 0);
  r.warmup = (uint32_t)strtoul(argv[9], NULL, 0);
  r.verify = strchr(argv[10], 'V') != NULL;
  r.do_wait = strchr(argv[10], 'w') != NULL;
  r.rndv = strchr(argv[10], 'R') != NULL;
  mx_endpoint_t ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  mxt_whoami(ep, &r.nic, &r.eid);
  uint64_t his_nic;
  CHECK(mx_hostname_to_nic_id(argv[2], &his_nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, his_nic, his_eid, MXT_KEY, 10000, &dest));

  /* Garbage where the classic sender leaves its stack: after the string's
     NUL and in the padding. */
  uint8_t pb[PARAMS_LEN];
  memset(pb, 0xa5, sizeof pb);
  put32(pb + 0, r.start);
  put32(pb + 4, r.end);
  put32(pb + 8, r.inc);
  put32(pb + 12, r.warmup);
  put32(pb + 16, r.verify);
  put32(pb + 20, r.iter);
  put32(pb + 24, r.do_wait);
  put32(pb + 28, r.eid);
  put32(pb + 32, r.rndv);
  put32(pb + 36, (uint32_t)r.nic);
  pb[40] = (uint8_t)(r.nic >> 40);
  pb[41] = (uint8_t)(r.nic >> 32);
  snprintf((char *)pb + 42, 64, "%f", (float)r.mult);
  send_wait(ep, pb, sizeof pb, dest, PARAM_MATCH, &(struct run){.do_wait = 1}, "parameters");

  uint8_t *sbuf = mxt_alloc(r.end), *rbuf[2] = {mxt_alloc(r.end), mxt_alloc(r.end)};
  uint64_t sseq = 0x1000, rseq = 0;
  unsigned lengths = 0;
  for (uint32_t len = r.start; len < r.end; len = next_len(&r, len), lengths++) {
    mx_request_t rr[2];
    unsigned cur = 1;
    mx_status_t st;
    mxt_fill(sbuf, len, (uint64_t)len * 7 + 1);
    CHECK(mxt_irecv(ep, rbuf[0], len, rseq++, MX_MATCH_MASK_NONE, &rr[0]));
    for (uint32_t i = 0; i < r.iter + r.warmup; i++) {
      mx_request_t sreq;
      CHECK(mxt_isend(ep, sbuf, len, dest, sseq++, (int)r.rndv, &sreq));
      CHECK(mxt_irecv(ep, rbuf[cur], len, rseq++, MX_MATCH_MASK_NONE, &rr[cur]));
      cur ^= 1;
      st = finish(ep, &sreq, (int)r.do_wait, "ping");
      EXPECT(st.code == MX_STATUS_SUCCESS, "ping: status %d", (int)st.code);
      st = finish(ep, &rr[cur], (int)r.do_wait, "pong");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len, "pong: status %d, %u of %u",
             (int)st.code, st.xfer_length, len);
      if (r.verify) mxt_verify(rbuf[cur], len, (uint64_t)len * 7 + 1, "pong");
    }
    send_wait(ep, sbuf, len, dest, sseq++, &r, "closing ping");
    send_wait(ep, sbuf, len, dest, sseq++, &r, "closing ping");
    cur ^= 1;
    st = finish(ep, &rr[cur], (int)r.do_wait, "closing pong");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len,
           "closing pong: status %d, %u of %u", (int)st.code, st.xfer_length, len);
  }
  /* The receiver sent exactly the schedule: no pong beyond it. */
  expect_quiet(ep, 0, 0, "after the run");
  printf("classic-send: ok (%u lengths, %" PRIu64 " pings, %" PRIu64 " pongs)\n", lengths,
         sseq - 0x1000, rseq);
  free(sbuf);
  free(rbuf[0]);
  free(rbuf[1]);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(120);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "send") == 0) return sender(argc, argv);
  fprintf(stderr, "usage: classic_pingpong recv EID | send HOST EID START END INC MULT ITER "
                  "WARMUP FLAGS\n");
  return 1;
}
