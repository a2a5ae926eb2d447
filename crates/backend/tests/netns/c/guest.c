/* A guest driven line by line on stdin, answering one line per command on
 * stdout (for tests that act between steps, e.g. restart a backend):
 *   open EID               mx_init (once) + open endpoint EID -> "open ok"
 *   connect HOST EID       resolve HOST, mx_connect -> "connect ok" |
 *                          "connect err N STRING"
 *   send LEN MATCH SYNC    (mx_issend if SYNC) LEN bytes of pattern MATCH
 *                          -> "send CODE STRING" | "send timeout"
 *   recv LEN MATCH         -> "recv CODE STRING LEN ok|bad" | "recv timeout"
 *   quit                   close, finalize -> "bye"
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <stdarg.h>

#include "mxt.h"

static mx_endpoint_t ep;
static mx_endpoint_addr_t dest;
static int opened;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

int main(void) {
  char line[512];
  mxt_watchdog(120);
  /* Failed requests are answers here, not fatal. */
  mx_set_error_handler(MX_ERRORS_RETURN);
  while (fgets(line, sizeof line, stdin)) {
    char host[256];
    unsigned eid, len, sync;
    unsigned long long match;
    if (sscanf(line, "open %u", &eid) == 1) {
      if (!opened) CHECK(mx_init());
      CHECK(mx_open_endpoint(MX_ANY_NIC, eid, MXT_KEY, NULL, 0, &ep));
      opened = 1;
      say("open ok");
    } else if (sscanf(line, "connect %255s %u", host, &eid) == 2) {
      uint64_t nic = 0;
      mx_return_t r = mx_hostname_to_nic_id(host, &nic);
      if (r == MX_SUCCESS) r = mx_connect(ep, nic, eid, MXT_KEY, 5000, &dest);
      if (r == MX_SUCCESS)
        say("connect ok");
      else
        say("connect err %d %s", (int)r, mx_strerror(r));
    } else if (sscanf(line, "send %u %llu %u", &len, &match, &sync) == 3) {
      uint8_t *buf = mxt_alloc(len);
      mx_request_t req;
      mx_status_t st;
      uint32_t result = 0;
      mxt_fill(buf, len, match);
      CHECK(mxt_isend(ep, buf, len, dest, match, (int)sync, &req));
      CHECK(mx_wait(ep, &req, 20000, &st, &result));
      if (result)
        say("send %d %s", (int)st.code, mx_strstatus(st.code));
      else
        say("send timeout");
      /* A timed-out request may still use the buffer: keep it. */
      if (result) free(buf);
    } else if (sscanf(line, "recv %u %llu", &len, &match) == 2) {
      uint8_t *buf = mxt_alloc(len);
      mx_request_t req;
      mx_status_t st;
      uint32_t result = 0;
      memset(buf, 0xee, len);
      CHECK(mxt_irecv(ep, buf, len, match, MX_MATCH_MASK_NONE, &req));
      CHECK(mx_wait(ep, &req, 20000, &st, &result));
      if (result) {
        int good = st.xfer_length == len && mxt_check_at(buf, 0, len, match) == len;
        say("recv %d %s %u %s", (int)st.code, mx_strstatus(st.code), st.xfer_length,
            good ? "ok" : "bad");
        free(buf);
      } else {
        say("recv timeout");
      }
    } else if (strncmp(line, "quit", 4) == 0) {
      if (opened) {
        CHECK(mx_close_endpoint(ep));
        CHECK(mx_finalize());
      }
      say("bye");
      return 0;
    } else {
      say("unknown command");
    }
  }
  return 0;
}
