/* A stream with 8 messages in flight (like mx_stream -V).
 *   stream recv EID                 receiver (prints "ready")
 *   stream send HOST EID LEN COUNT  sender
 * The sender sends a 20-byte metadata message (match 0x80000000: length,
 * count, its NIC id and endpoint id); the receiver connects back, posts 8
 * receives and says ready (match 0x80000001); the sender streams COUNT
 * messages (match = sequence number) with 8 sends in flight; the receiver
 * checks each message's bytes, reposts, and returns the elapsed time.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define META 0x80000000ull
#define READY 0x80000001ull
#define DONE 0x80000002ull
#define WINDOW 8

struct meta {
  uint32_t len, count;
  uint64_t nic;
  uint32_t eid;
} __attribute__((packed));

static int receiver(uint32_t eid) {
  mx_endpoint_t ep = mxt_open(eid, NULL, 0);
  struct meta m;
  mx_request_t req;
  mx_status_t st;
  CHECK(mxt_irecv(ep, &m, sizeof m, META, MX_MATCH_MASK_NONE, &req));
  printf("ready\n");
  fflush(stdout);
  st = mxt_wait(ep, &req, 20000, "metadata");
  EXPECT(st.xfer_length == 20, "metadata is %u bytes", st.xfer_length);
  mx_endpoint_addr_t back;
  CHECK(mx_connect(ep, m.nic, m.eid, MXT_KEY, 10000, &back));

  uint8_t *bufs[WINDOW];
  mx_request_t reqs[WINDOW];
  for (int i = 0; i < WINDOW; i++) {
    bufs[i] = mxt_alloc(m.len);
    if ((uint32_t)i < m.count) CHECK(mxt_irecv(ep, bufs[i], m.len, (uint64_t)i, MX_MATCH_MASK_NONE, &reqs[i]));
  }
  CHECK(mxt_isend(ep, NULL, 0, back, READY, 0, &req));
  mxt_wait(ep, &req, 20000, "ready send");
  double t0 = mxt_now();
  for (uint32_t n = 0; n < m.count; n++) {
    int w = (int)(n % WINDOW);
    st = mxt_wait(ep, &reqs[w], 20000, "stream message");
    EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == m.len && st.match_info == n,
           "message %u: status %d len %u match %" PRIx64, n, (int)st.code, st.xfer_length,
           st.match_info);
    mxt_verify(bufs[w], m.len, n, "stream message");
    memset(bufs[w], 0, m.len);
    if (n + WINDOW < m.count)
      CHECK(mxt_irecv(ep, bufs[w], m.len, (uint64_t)(n + WINDOW), MX_MATCH_MASK_NONE, &reqs[w]));
  }
  double usec = (mxt_now() - t0) * 1e6;
  CHECK(mxt_isend(ep, &usec, sizeof usec, back, DONE, 0, &req));
  mxt_wait(ep, &req, 20000, "done send");
  for (int i = 0; i < WINDOW; i++) free(bufs[i]);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("stream-recv: ok\n");
  return 0;
}

static int sender(const char *host, uint32_t eid, uint32_t len, uint32_t count) {
  mx_endpoint_t ep = mxt_open(MX_ANY_ENDPOINT, NULL, 0);
  uint64_t nic;
  CHECK(mx_hostname_to_nic_id((char *)host, &nic));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, MXT_KEY, 10000, &dest));
  uint64_t my_nic;
  uint32_t my_eid;
  mxt_whoami(ep, &my_nic, &my_eid);
  struct meta m = {len, count, my_nic, my_eid};
  mx_request_t req, reqs[WINDOW];
  double usec = 0;
  mx_request_t done_req;
  CHECK(mxt_irecv(ep, &usec, sizeof usec, DONE, MX_MATCH_MASK_NONE, &done_req));
  CHECK(mxt_irecv(ep, NULL, 0, READY, MX_MATCH_MASK_NONE, &req));
  mx_request_t mreq;
  CHECK(mxt_isend(ep, &m, 20, dest, META, 0, &mreq));
  mxt_wait(ep, &mreq, 20000, "metadata send");
  mxt_wait(ep, &req, 20000, "ready");
  uint8_t *bufs[WINDOW];
  for (int i = 0; i < WINDOW; i++) bufs[i] = mxt_alloc(len);
  for (uint32_t n = 0; n < count; n++) {
    int w = (int)(n % WINDOW);
    if (n >= WINDOW) {
      mx_status_t st = mxt_wait(ep, &reqs[w], 20000, "stream send");
      EXPECT(st.code == MX_STATUS_SUCCESS, "send %u: %d", n - WINDOW, (int)st.code);
    }
    mxt_fill(bufs[w], len, n);
    CHECK(mxt_isend(ep, bufs[w], len, dest, n, 0, &reqs[w]));
  }
  for (uint32_t n = count > WINDOW ? count - WINDOW : 0; n < count; n++)
    mxt_wait(ep, &reqs[n % WINDOW], 20000, "stream send");
  mxt_wait(ep, &done_req, 20000, "elapsed time");
  printf("Total: %u %.3f %.1f\n", len, (double)len * count / usec, count / usec * 1e6);
  for (int i = 0; i < WINDOW; i++) free(bufs[i]);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("stream-send: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(120);
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver((uint32_t)atoi(argv[2]));
  if (argc == 6 && strcmp(argv[1], "send") == 0)
    return sender(argv[2], (uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]),
                  (uint32_t)atoi(argv[5]));
  fprintf(stderr, "usage: stream recv EID | send HOST EID LEN COUNT\n");
  return 64;
}
