/* Segment vectors (Open-MX's vectors test): 10-segment sends and
 * receives with different splits on both sides, from tiny to large; the
 * largest totals 3357814 bytes with segments spanning tiny to large.
 *   vectors recv EID        receiver (prints "ready")
 *   vectors send HOST EID   sender
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define NSEG 10
/* Sender splits; the receiver uses them in reverse order. */
static const uint32_t splits[][NSEG] = {
    {1, 2, 3, 4, 0, 5, 6, 3, 4, 2},                                    /* 30: tiny */
    {1, 13, 20, 0, 30, 10, 16, 10, 10, 10},                            /* 120: small */
    {1, 13, 32, 128, 1000, 4000, 8192, 3000, 3634, 0},                 /* 20000: medium */
    {1, 13, 32, 128, 1000, 8192, 32768, 100000, 1000000, 2215680},     /* 3357814: large */
};
#define NMSG 4

static uint32_t total(int m) {
  uint32_t t = 0;
  for (int s = 0; s < NSEG; s++) t += splits[m][s];
  return t;
}

/* Build the segment list of message m over one contiguous allocation
 * (segments are separate allocations so they are not adjacent). */
static void make_segs(int m, int reverse, mx_segment_t *segs, uint8_t **mem) {
  for (int s = 0; s < NSEG; s++) {
    uint32_t len = splits[m][reverse ? NSEG - 1 - s : s];
    mem[s] = mxt_alloc(len + 64);
    segs[s].segment_ptr = mem[s] + 7; /* unaligned on purpose */
    segs[s].segment_length = len;
  }
}

static int receiver(uint32_t eid) {
  mx_set_error_handler(MX_ERRORS_RETURN);
  mx_endpoint_t ep = mxt_open(eid, NULL, 0);
  mx_segment_t segs[NMSG][NSEG];
  uint8_t *mem[NMSG][NSEG];
  mx_request_t reqs[NMSG];
  mx_segment_t many[257];
  mx_request_t bad;
  memset(many, 0, sizeof many);
  EXPECT_RET(mx_irecv(ep, many, 257, 0, MX_MATCH_MASK_NONE, NULL, &bad), MX_BAD_SEG_CNT);
  /* Half of the receives are posted before the data arrives, half after. */
  for (int m = 0; m < NMSG; m += 2) {
    make_segs(m, 1, segs[m], mem[m]);
    CHECK(mx_irecv(ep, segs[m], NSEG, (uint64_t)m, MX_MATCH_MASK_NONE, NULL, &reqs[m]));
  }
  printf("ready\n");
  fflush(stdout);
  for (int m = 1; m < NMSG; m += 2) {
    mx_status_t st;
    uint32_t result;
    CHECK(mx_probe(ep, 20000, (uint64_t)m, MX_MATCH_MASK_NONE, &st, &result));
    EXPECT(result == 1 && st.msg_length == total(m), "probe %d", m);
    make_segs(m, 1, segs[m], mem[m]);
    CHECK(mx_irecv(ep, segs[m], NSEG, (uint64_t)m, MX_MATCH_MASK_NONE, NULL, &reqs[m]));
  }
  for (int m = 0; m < NMSG; m++) {
    mx_status_t st = mxt_wait(ep, &reqs[m], 20000, "vector receive");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == total(m), "message %d: %d %u", m,
           (int)st.code, st.xfer_length);
    size_t off = 0;
    for (int s = 0; s < NSEG; s++) {
      uint32_t len = segs[m][s].segment_length;
      size_t bad_at = mxt_check_at(segs[m][s].segment_ptr, off, len, 1000 + (uint64_t)m);
      EXPECT(bad_at == len, "message %d segment %d: byte %zu differs", m, s, bad_at);
      off += len;
      free(mem[m][s]);
    }
    printf("vector of %u bytes: ok\n", total(m));
  }
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("vectors-recv: ok\n");
  return 0;
}

static int sender(const char *host, uint32_t eid) {
  mx_endpoint_t ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  mx_segment_t segs[NMSG][NSEG];
  uint8_t *mem[NMSG][NSEG];
  mx_request_t reqs[NMSG];
  for (int m = 0; m < NMSG; m++) {
    make_segs(m, 0, segs[m], mem[m]);
    size_t off = 0;
    for (int s = 0; s < NSEG; s++) {
      mxt_fill_at(segs[m][s].segment_ptr, off, segs[m][s].segment_length, 1000 + (uint64_t)m);
      off += segs[m][s].segment_length;
    }
    CHECK(mx_isend(ep, segs[m], NSEG, dest, (uint64_t)m, NULL, &reqs[m]));
  }
  for (int m = 0; m < NMSG; m++) {
    mx_status_t st = mxt_wait(ep, &reqs[m], 20000, "vector send");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == total(m), "send %d: %d", m,
           (int)st.code);
    for (int s = 0; s < NSEG; s++) free(mem[m][s]);
  }
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("vectors-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(60);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc == 4 && strcmp(argv[1], "send") == 0) return sender(argv[2], (uint32_t)atoi(argv[3]));
  fprintf(stderr, "usage: vectors recv EID | send HOST EID\n");
  return 64;
}
