/* Ping-pong between two processes over every size class, byte-verified
 * both ways (like mx_pingpong -V).
 *   pingpong recv EID            receiver on endpoint EID (prints "ready")
 *   pingpong send HOST EID MODE  sender; MODE: test (poll mx_test),
 *                                wait (mx_wait), sync (mx_issend + wait)
 * The sender sends a hello (its NIC id and endpoint id, match
 * 0x0000222211110000), the receiver connects back; pings count up from
 * match 0x1000, pongs from 0. The receiver checks every ping, echoes it,
 * and the sender checks every pong.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define HELLO_MATCH 0x0000222211110000ull

static const uint32_t sizes[] = {
    0,     1,     2,      4,      8,      16,      31,      32,      33,
    64,    127,   128,    129,    256,    512,     1024,    2048,    4096,
    8191,  8192,  8193,   16384,  32767,  32768,   32769,   65536,   131072,
    262143, 262144, 262145, 524288, 1048576, 2097152, 4194303, 4194304};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static int iters_for(uint32_t len) { return len >= 1048576 ? 2 : len >= 65536 ? 4 : 8; }

static uint64_t salt_of(uint32_t len, int it) { return ((uint64_t)len << 16) ^ (uint64_t)it; }

/* Complete `req` by polling mx_test (mode test) or mx_wait. */
static mx_status_t complete(mx_endpoint_t ep, mx_request_t *req, int poll, const char *what) {
  if (!poll) return mxt_wait(ep, req, 20000, what);
  mx_status_t st;
  uint32_t result = 0;
  double t0 = mxt_now();
  while (!result) {
    CHECK(mx_test(ep, req, &st, &result));
    EXPECT(mxt_now() - t0 < 20.0, "%s: no completion", what);
  }
  EXPECT(*req == NULL, "%s: request not released", what);
  return st;
}

static int receiver(uint32_t eid) {
  mx_endpoint_t ep = mxt_open(eid, NULL, 0);
  uint64_t hello[2];
  mx_request_t req;
  mx_status_t st;
  CHECK(mxt_irecv(ep, hello, sizeof hello, HELLO_MATCH, MX_MATCH_MASK_NONE, &req));
  printf("ready\n");
  fflush(stdout);
  st = mxt_wait(ep, &req, 20000, "hello");
  EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == sizeof hello, "hello status %d",
         (int)st.code);
  /* The source of a message decomposes to the sender's NIC and endpoint. */
  uint64_t src_nic;
  uint32_t src_eid;
  CHECK(mx_decompose_endpoint_addr(st.source, &src_nic, &src_eid));
  EXPECT(src_nic == hello[0] && src_eid == (uint32_t)hello[1], "source %" PRIx64 "/%u",
         src_nic, src_eid);
  mx_endpoint_addr_t back;
  CHECK(mx_connect(ep, hello[0], (uint32_t)hello[1], MXT_KEY, 10000, &back));

  uint8_t *buf = mxt_alloc(4194304);
  uint64_t ping = 0x1000, pong = 0;
  for (size_t s = 0; s < NSIZES; s++) {
    uint32_t len = sizes[s];
    for (int it = 0; it < iters_for(len); it++) {
      memset(buf, 0xee, len);
      CHECK(mxt_irecv(ep, buf, len, ping++, MX_MATCH_MASK_NONE, &req));
      st = complete(ep, &req, it & 1, "ping");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.msg_length == len && st.xfer_length == len,
             "ping %u: status %d len %u/%u", len, (int)st.code, st.xfer_length, st.msg_length);
      mxt_verify(buf, len, salt_of(len, it), "ping");
      CHECK(mxt_isend(ep, buf, len, back, pong++, 0, &req));
      st = complete(ep, &req, 0, "pong send");
      EXPECT(st.code == MX_STATUS_SUCCESS, "pong send %u: %d", len, (int)st.code);
    }
  }
  free(buf);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("pingpong-recv: ok\n");
  return 0;
}

static int sender(const char *host, uint32_t eid, const char *mode) {
  int poll = strcmp(mode, "test") == 0, sync = strcmp(mode, "sync") == 0;
  mx_endpoint_t ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  uint32_t board;
  CHECK(mx_nic_id_to_board_number(nic, &board));
  EXPECT(board == 0, "board %u", board);
  char name[MX_MAX_HOSTNAME_LEN];
  CHECK(mx_nic_id_to_hostname(nic, name));
  EXPECT(strcmp(name, host) == 0, "hostname %s != %s", name, host);
  printf("Starting pingpong send to host %s\n", name);

  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  uint64_t hello[2];
  uint32_t my_eid;
  mxt_whoami(ep, &hello[0], &my_eid);
  hello[1] = my_eid;
  mx_request_t req, rreq;
  mx_status_t st;
  CHECK(mxt_isend(ep, hello, sizeof hello, dest, HELLO_MATCH, 0, &req));
  mxt_wait(ep, &req, 20000, "hello send");

  uint8_t *out = mxt_alloc(4194304), *in = mxt_alloc(4194304);
  uint64_t ping = 0x1000, pong = 0;
  printf("   Length   Latency(us)    Bandwidth(MB/s)\n");
  for (size_t s = 0; s < NSIZES; s++) {
    uint32_t len = sizes[s];
    int iters = iters_for(len);
    double t0 = mxt_now();
    for (int it = 0; it < iters; it++) {
      mxt_fill(out, len, salt_of(len, it));
      memset(in, 0x11, len);
      CHECK(mxt_irecv(ep, in, len, pong++, MX_MATCH_MASK_NONE, &rreq));
      CHECK(mxt_isend(ep, out, len, dest, ping++, sync, &req));
      st = complete(ep, &req, poll, "ping send");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len, "ping send %u: %d", len,
             (int)st.code);
      st = complete(ep, &rreq, poll, "pong");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len, "pong %u: %d %u", len,
             (int)st.code, st.xfer_length);
      mxt_verify(in, len, salt_of(len, it), "pong");
    }
    double us = (mxt_now() - t0) * 1e6;
    printf("%9u   %9.3f       %8.3f\n", len, us / iters / 2, 2.0 * iters * len / us);
  }
  free(out);
  free(in);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("pingpong-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(120);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc == 5 && strcmp(argv[1], "send") == 0)
    return sender(argv[2], (uint32_t)atoi(argv[3]), argv[4]);
  fprintf(stderr, "usage: pingpong recv EID | send HOST EID test|wait|sync\n");
  return 64;
}
