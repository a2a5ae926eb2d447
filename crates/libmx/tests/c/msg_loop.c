/* One process sending to its own endpoint (like mx_msg_loop -R -P 11):
 * random sizes, P messages in parallel, every byte checked, for a bounded
 * time. Run with MX_DISABLE_SELF=1 to go through the backend.
 *   msg_loop SECONDS MAXLEN PARALLEL [sync]
 * Odd rounds post the sends first (unexpected path, pending rendezvous,
 * mx_probe before receiving), even rounds the receives first; with "sync"
 * every third message is an mx_issend.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "mxt.h"

#define PMAX 128

int main(int argc, char **argv) {
  mxt_watchdog(120);
  if (argc < 4) {
    fprintf(stderr, "usage: msg_loop SECONDS MAXLEN PARALLEL [sync]\n");
    return 64;
  }
  double secs = atof(argv[1]);
  uint32_t maxlen = (uint32_t)atoi(argv[2]);
  int par = atoi(argv[3]);
  int sync = argc > 4 && strcmp(argv[4], "sync") == 0;
  EXPECT(par > 0 && par <= PMAX, "parallel %d", par);
  mx_endpoint_t ep;
  CHECK(mx_init());
  CHECK(mx_open_endpoint(MX_ANY_NIC, MX_ANY_ENDPOINT, 0xabcde, NULL, 0, &ep));
  mx_endpoint_addr_t me;
  CHECK(mx_get_endpoint_addr(ep, &me));
  uint64_t nic;
  uint32_t eid;
  CHECK(mx_decompose_endpoint_addr(me, &nic, &eid));
  char host[MX_MAX_HOSTNAME_LEN];
  CHECK(mx_nic_id_to_hostname(nic, host));
  mx_endpoint_addr_t dest;
  CHECK(mx_connect(ep, nic, eid, 0xabcde, 10000, &dest));

  uint8_t *sbuf[PMAX], *rbuf[PMAX];
  uint32_t len[PMAX];
  mx_request_t sreq[PMAX], rreq[PMAX];
  for (int k = 0; k < par; k++) {
    sbuf[k] = mxt_alloc(maxlen);
    rbuf[k] = mxt_alloc(maxlen);
  }
  unsigned seed = 12345;
  uint64_t msgs = 0, bytes = 0;
  double t0 = mxt_now();
  uint32_t round;
  for (round = 0; mxt_now() - t0 < secs; round++) {
    for (int k = 0; k < par; k++) {
      uint32_t r = (uint32_t)rand_r(&seed);
      /* Mostly small, sometimes up to maxlen. */
      len[k] = (r & 3) == 0 ? (uint32_t)rand_r(&seed) % (maxlen + 1)
                            : (uint32_t)rand_r(&seed) % (maxlen / 16 + 1);
      mxt_fill(sbuf[k], len[k], ((uint64_t)round << 8) | (uint64_t)k);
      memset(rbuf[k], 0, len[k]);
    }
    int sends_first = round & 1;
    for (int pass = 0; pass < 2; pass++) {
      for (int k = 0; k < par; k++) {
        uint64_t match = ((uint64_t)round << 8) | (uint64_t)k;
        if (pass == (sends_first ? 0 : 1)) {
          CHECK(mxt_isend(ep, sbuf[k], len[k], dest, match, sync && k % 3 == 0, &sreq[k]));
        } else {
          if (sends_first && k == 0) {
            mx_status_t st;
            uint32_t result;
            CHECK(mx_probe(ep, 10000, match, MX_MATCH_MASK_NONE, &st, &result));
            EXPECT(result == 1 && st.msg_length == len[k] && st.match_info == match,
                   "probe: result %u len %u", result, st.msg_length);
          }
          CHECK(mxt_irecv(ep, rbuf[k], len[k], match, MX_MATCH_MASK_NONE, &rreq[k]));
        }
      }
    }
    for (int k = 0; k < par; k++) {
      mx_status_t st = mxt_wait(ep, &rreq[k], 10000, "receive");
      EXPECT(st.code == MX_STATUS_SUCCESS && st.xfer_length == len[k],
             "round %u msg %d: status %d len %u/%u", round, k, (int)st.code, st.xfer_length,
             len[k]);
      mxt_verify(rbuf[k], len[k], ((uint64_t)round << 8) | (uint64_t)k, "message");
      st = mxt_wait(ep, &sreq[k], 10000, "send");
      EXPECT(st.code == MX_STATUS_SUCCESS, "send status %d", (int)st.code);
      msgs++;
      bytes += len[k];
    }
  }
  for (int k = 0; k < par; k++) {
    free(sbuf[k]);
    free(rbuf[k]);
  }
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  printf("msg_loop: %u rounds, %" PRIu64 " messages, %" PRIu64 " bytes on %s\n", round, msgs,
         bytes, host);
  printf("msg_loop: ok\n");
  return 0;
}
