/* One process, MX_ERRORS_RETURN: cancel (an iconnect to a stopped peer
 * and a receive), connect errors, endpoint parameters, mx_get_info,
 * naming, addresses and their contexts, request calls (ibuffered,
 * context, ipeek, test_any, forget, set_request_timeout), the
 * per-endpoint error handler, the raw API and the mapper state.
 * A forked peer opens endpoint 5 and is stopped (SIGSTOP).
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <mx_io.h>
#include <mx_raw.h>

#include "mxt.h"

#define PEER_EID 5

static int global_calls, ep_calls;
static mx_return_t global_handler(char *msg, mx_return_t ret) {
  (void)msg;
  global_calls++;
  return ret;
}
static mx_return_t ep_handler(char *msg, mx_return_t ret) {
  (void)msg;
  ep_calls++;
  return ret;
}

int main(void) {
  mxt_watchdog(60);
  pid_t peer = mxt_stopped_peer(PEER_EID, 1);
  pid_t late = mxt_stopped_peer(PEER_EID + 1, 0); /* stopped later */
  mx_set_error_handler(global_handler);
  CHECK(mx_init());
  EXPECT_RET(mx_init(), MX_ALREADY_INITIALIZED);

  /* --- mx_open_endpoint parameters --- */
  mx_endpoint_t ep, ep2, bad;
  mx_param_t p[2];
  memset(p, 0, sizeof p);
  EXPECT_RET(mx_open_endpoint(7, 1, MXT_KEY, NULL, 0, &bad), MX_BOARD_UNKNOWN);
  EXPECT_RET(mx_open_endpoint(0, 1, MXT_KEY, NULL, 1, &bad), MX_BAD_PARAM_LIST);
  p[0].key = (mx_param_key_t)9;
  EXPECT_RET(mx_open_endpoint(0, 1, MXT_KEY, p, 1, &bad), MX_BAD_PARAM_NAME);
  p[0].key = MX_PARAM_CONTEXT_ID;
  p[0].val.context_id.bits = 17;
  EXPECT_RET(mx_open_endpoint(0, 1, MXT_KEY, p, 1, &bad), MX_BAD_PARAM_VAL);
  p[0].val.context_id.bits = 10;
  p[0].val.context_id.shift = 60;
  EXPECT_RET(mx_open_endpoint(0, 1, MXT_KEY, p, 1, &bad), MX_BAD_PARAM_VAL);
  p[0].key = MX_PARAM_UNEXP_QUEUE_MAX;
  p[0].val.unexp_queue_max = 10;
  CHECK(mx_open_endpoint(0, 1, MXT_KEY, p, 1, &ep));
  EXPECT_RET(mx_open_endpoint(MX_ANY_NIC, 1, MXT_KEY, NULL, 0, &bad), MX_BUSY);
  CHECK(mx_open_endpoint(MX_ANY_NIC, 2, MXT_KEY + 1, NULL, 0, &ep2));
  EXPECT(global_calls == 6, "global handler calls %d", global_calls);

  /* --- mx_get_info --- */
  uint32_t v = 0;
  uint64_t ids[3] = {~0ull, ~0ull, ~0ull};
  CHECK(mx_get_info(NULL, MX_NIC_COUNT, NULL, 0, &v, sizeof v));
  EXPECT(v == 1, "NIC_COUNT %u", v);
  EXPECT_RET(mx_get_info(NULL, MX_NIC_IDS, NULL, 0, ids, 8), MX_BAD_INFO_LENGTH);
  CHECK(mx_get_info(NULL, MX_NIC_IDS, NULL, 0, ids, sizeof ids));
  EXPECT(ids[0] != 0 && ids[1] == 0 && ids[2] == ~0ull, "NIC_IDS not 0-terminated");
  uint64_t nic;
  CHECK(mx_board_number_to_nic_id(0, &nic));
  EXPECT(nic == ids[0], "board 0 NIC");
  EXPECT_RET(mx_board_number_to_nic_id(1, &nic), MX_BOARD_UNKNOWN);
  CHECK(mx_get_info(ep, MX_MAX_NATIVE_ENDPOINTS, NULL, 0, &v, sizeof v));
  EXPECT(v >= 8, "MAX_NATIVE_ENDPOINTS %u", v);
  CHECK(mx_get_info(NULL, MX_NATIVE_REQUESTS, NULL, 0, &v, sizeof v));
  EXPECT(v == UINT32_MAX, "NATIVE_REQUESTS %u", v);
  uint32_t board = 0, nctr = 0;
  CHECK(mx_get_info(ep, MX_COUNTERS_COUNT, &board, sizeof board, &nctr, sizeof nctr));
  EXPECT(nctr > 0 && nctr < 1000, "COUNTERS_COUNT %u", nctr);
  char *labels = mxt_alloc(nctr * MX_MAX_STR_LEN);
  uint32_t *vals = mxt_alloc(nctr * 4);
  CHECK(mx_get_info(ep, MX_COUNTERS_LABELS, &board, sizeof board, labels, nctr * MX_MAX_STR_LEN));
  EXPECT(strlen(labels) > 0, "first counter label empty");
  CHECK(mx_get_info(NULL, MX_COUNTERS_VALUES, &board, sizeof board, vals, nctr * 4));
  board = 3;
  EXPECT_RET(mx_get_info(NULL, MX_COUNTERS_COUNT, &board, sizeof board, &v, sizeof v),
             MX_BOARD_UNKNOWN);
  char str[MX_MAX_STR_LEN];
  CHECK(mx_get_info(NULL, MX_PRODUCT_CODE, NULL, 0, str, sizeof str));
  EXPECT(strlen(str) > 0, "PRODUCT_CODE");
  CHECK(mx_get_info(NULL, MX_SERIAL_NUMBER, NULL, 0, str, 5));
  EXPECT(strlen(str) == 4, "SERIAL_NUMBER not truncated to the buffer");
  CHECK(mx_get_info(NULL, MX_PORT_COUNT, NULL, 0, &v, sizeof v));
  EXPECT(v == 1, "PORT_COUNT");
  CHECK(mx_get_info(NULL, MX_PIO_SEND_MAX, NULL, 0, &v, sizeof v));
  EXPECT(v == 128, "PIO_SEND_MAX");
  CHECK(mx_get_info(ep, MX_COPY_SEND_MAX, NULL, 0, &v, sizeof v));
  EXPECT(v == 32768, "COPY_SEND_MAX %u", v);
  CHECK(mx_get_info(NULL, MX_NET_TYPE, NULL, 0, &v, sizeof v));
  EXPECT(v == MX_NET_ETHER, "NET_TYPE");
  CHECK(mx_get_info(NULL, MX_LINE_SPEED, NULL, 0, &v, sizeof v));
  EXPECT(v == MX_SPEED_OPEN_MX, "LINE_SPEED");
  CHECK(mx_get_info(NULL, MX_NUMA_NODE, NULL, 0, &v, sizeof v));
  EXPECT_RET(mx_get_info(NULL, (mx_get_info_key_t)99, NULL, 0, &v, sizeof v), MX_BAD_INFO_KEY);
  EXPECT_RET(mx_get_info(NULL, MX_NIC_COUNT, NULL, 0, NULL, 4), MX_BAD_INFO_VAL);

  /* --- naming --- */
  char host[MX_MAX_HOSTNAME_LEN];
  CHECK(mx_nic_id_to_hostname(nic, host));
  uint64_t nic2;
  CHECK(mx_hostname_to_nic_id(host, &nic2));
  EXPECT(nic2 == nic, "hostname round trip");
  EXPECT_RET(mx_hostname_to_nic_id((char *)"no-such-host:0", &nic2), MX_HOST_NOT_FOUND);
  EXPECT_RET(mx_nic_id_to_hostname(0x123, host), MX_NIC_NOT_FOUND);
  CHECK(mx_nic_id_to_board_number(nic, &v));
  EXPECT(v == 0, "board number");
  EXPECT_RET(mx_nic_id_to_board_number(0x123, &v), MX_NIC_NOT_FOUND);

  /* --- connect --- */
  mx_endpoint_addr_t a2, self, a;
  EXPECT_RET(mx_connect(ep, nic, 2, MXT_KEY, 5000, &a), MX_BAD_CONNECTION_KEY);
  EXPECT_RET(mx_connect(ep, nic, 9, MXT_KEY, 5000, &a), MX_CONNECTION_FAILED);
  EXPECT_RET(mx_connect(ep, nic, 300, MXT_KEY, 5000, &a), MX_BAD_ENDPOINT_ID);
  /* An id the board does not have (it has MAX_NATIVE_ENDPOINTS). */
  uint32_t maxep;
  CHECK(mx_get_info(ep, MX_MAX_NATIVE_ENDPOINTS, NULL, 0, &maxep, sizeof maxep));
  EXPECT_RET(mx_connect(ep, nic, maxep + 1, MXT_KEY, 5000, &a), MX_BAD_ENDPOINT_ID);
  EXPECT_RET(mx_connect(ep, 0x123, 2, MXT_KEY, 5000, &a), MX_NIC_NOT_FOUND);
  double t0 = mxt_now();
  EXPECT_RET(mx_connect(ep, nic, PEER_EID, MXT_KEY, 300, &a), MX_TIMEOUT);
  EXPECT(mxt_now() - t0 < 3, "connect timeout took %.1f s", mxt_now() - t0);
  CHECK(mx_connect(ep, nic, 2, MXT_KEY + 1, 5000, &a2));
  CHECK(mx_connect(ep, nic, 1, MXT_KEY, 5000, &self));
  mx_endpoint_addr_t mine;
  CHECK(mx_get_endpoint_addr(ep, &mine));
  uint32_t eid, session;
  CHECK(mx_decompose_endpoint_addr2(a2, &nic2, &eid, &session));
  EXPECT(nic2 == nic && eid == 2, "decompose2: %" PRIx64 " %u", nic2, eid);

  /* --- address contexts: per partner, shared by every copy --- */
  void *ctx = (void *)1;
  CHECK(mx_get_endpoint_addr_context(a2, &ctx));
  EXPECT(ctx == NULL, "initial address context");
  CHECK(mx_set_endpoint_addr_context(a2, &ctx));
  mx_endpoint_addr_t a2copy;
  CHECK(mx_connect(ep, nic, 2, MXT_KEY + 1, 5000, &a2copy));
  CHECK(mx_get_endpoint_addr_context(a2copy, &ctx));
  EXPECT(ctx == (void *)&ctx, "address context not shared");

  /* --- cancel: an iconnect to the stopped peer, a posted receive --- */
  mx_request_t req, req2;
  uint32_t result;
  mx_status_t st;
  CHECK(mx_iconnect(ep, nic, PEER_EID, MXT_KEY, 0x77, (void *)&v, &req));
  CHECK(mx_test(ep, &req, &st, &result));
  EXPECT(result == 0, "iconnect to a stopped peer finished");
  CHECK(mx_cancel(ep, &req, &result));
  EXPECT(result == 1, "iconnect not cancelled");
  EXPECT_RET(mx_test(ep, &req, &st, &result), MX_BAD_REQUEST);
  char rbuf[64];
  CHECK(mxt_irecv(ep, rbuf, 64, 0x10, MX_MATCH_MASK_NONE, &req));
  CHECK(mx_cancel(ep, &req, &result));
  EXPECT(result == 1, "receive not cancelled");
  EXPECT_RET(mx_wait(ep, &req, 10, &st, &result), MX_BAD_REQUEST);
  EXPECT_RET(mxt_irecv(ep, rbuf, 64, 0x13, 0x1, &req), MX_BAD_MATCH_MASK);

  /* A matched receive cannot be cancelled; a send cannot be either. */
  char sbuf[64] = "hello";
  CHECK(mxt_irecv(ep, rbuf, 64, 0x11, MX_MATCH_MASK_NONE, &req));
  CHECK(mx_isend(ep, &(mx_segment_t){sbuf, 6}, 1, mine, 0x11, (void *)sbuf, &req2));
  mx_status_t sst = mxt_wait(ep, &req2, 5000, "self send");
  EXPECT(sst.context == (void *)sbuf, "send context");
  CHECK(mx_cancel(ep, &req, &result));
  EXPECT(result == 0, "a matched receive was cancelled");
  st = mxt_wait(ep, &req, 5000, "self receive");
  EXPECT(st.xfer_length == 6 && strcmp(rbuf, "hello") == 0, "self message");
  CHECK(mx_issend(ep, &(mx_segment_t){sbuf, 6}, 1, self, 0x12, NULL, &req2));
  EXPECT_RET(mx_cancel(ep, &req2, &result), MX_BAD_REQUEST);
  EXPECT(req2 != NULL, "a refused cancel kept the send's handle");

  /* --- ibuffered, context, ipeek, test_any, forget --- */
  CHECK(mx_ibuffered(ep, &req2, &result));
  EXPECT(result == 0, "a synchronous send is not buffered");
  CHECK(mx_isend(ep, &(mx_segment_t){sbuf, 6}, 1, a2, 0x20, NULL, &req));
  CHECK(mx_ibuffered(ep, &req, &result));
  EXPECT(result == 1, "a tiny send is buffered");
  mxt_wait(ep, &req, 5000, "tiny send");
  CHECK(mxt_irecv(ep, rbuf, 64, 0x12, MX_MATCH_MASK_NONE, &req));
  EXPECT_RET(mx_ibuffered(ep, &req, &result), MX_BAD_REQUEST);
  void *c = NULL;
  CHECK(mx_context(&req2, &c));
  EXPECT(c == NULL, "context of the issend");
  st = mxt_wait(ep, &req, 5000, "receive of the issend");
  mxt_wait(ep, &req2, 5000, "issend");
  CHECK(mx_irecv(ep, NULL, 0, 0x30, MX_MATCH_MASK_NONE, (void *)&c, &req));
  CHECK(mx_context(&req, &c));
  EXPECT(c == (void *)&c, "mx_context");
  mx_request_t peeked = NULL;
  CHECK(mx_ipeek(ep, &peeked, &result));
  EXPECT(result == 0, "ipeek found %p", (void *)peeked);
  CHECK(mx_isend(ep, NULL, 0, self, 0x30, NULL, &req2));
  CHECK(mx_forget(ep, &req2));
  CHECK(mx_peek(ep, 5000, &peeked, &result));
  EXPECT(result == 1 && peeked == req, "peek");
  EXPECT_RET(mx_test_any(ep, 0x31, 0x30, &st, &result), MX_BAD_MATCH_MASK);
  CHECK(mx_test_any(ep, 0x40, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 0, "test_any matched the wrong request");
  CHECK(mx_test_any(ep, 0x30, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1 && st.match_info == 0x30 && st.context == (void *)&c, "test_any");
  EXPECT_RET(mx_test(ep, &req, &st, &result), MX_BAD_REQUEST);

  /* Finished sends qualify too, with their match info and context (MX and
     Open-MX walk the whole done queue; MPICH's nemesis netmod sees its sends
     complete only through mx_test_any, and hung in MPI_Finalize before). */
  CHECK(mx_isend(ep, &(mx_segment_t){sbuf, 6}, 1, a2, 0x51, (void *)&v, &req2));
  result = 0;
  for (int i = 0; i < 1000000 && !result; i++)
    CHECK(mx_test_any(ep, 0x51, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1 && st.match_info == 0x51 && st.context == (void *)&v &&
             st.code == MX_STATUS_SUCCESS,
         "test_any returns a finished send");
  EXPECT_RET(mx_test(ep, &req2, &st, &result), MX_BAD_REQUEST);
  CHECK(mx_isend(ep, &(mx_segment_t){sbuf, 6}, 1, a2, 0x52, NULL, &req2));
  CHECK(mx_wait_any(ep, 5000, 0x50, 0xf0, &st, &result));
  EXPECT(result == 1 && st.match_info == 0x52, "wait_any returns a finished send");

  /* An iconnect completes through wait_any with its match and context. */
  CHECK(mx_iconnect(ep2, nic, 1, MXT_KEY, 0x99, (void *)&v, &req));
  CHECK(mx_wait_any(ep2, 5000, 0x99, MX_MATCH_MASK_NONE, &st, &result));
  EXPECT(result == 1 && st.code == MX_STATUS_SUCCESS && st.context == (void *)&v, "iconnect");
  CHECK(mx_decompose_endpoint_addr(st.source, &nic2, &eid));
  EXPECT(eid == 1, "iconnect address names endpoint %u", eid);
  CHECK(mx_iconnect(ep2, nic, 1, MXT_KEY + 5, 0x98, NULL, &req));
  global_calls = 0;
  st = mxt_wait(ep2, &req, 5000, "bad-key iconnect");
  EXPECT(st.code == MX_STATUS_BAD_KEY, "bad-key iconnect: %s", mx_strstatus(st.code));
  EXPECT(global_calls == 1, "error status not reported to the handler");

  /* Request timeouts: a synchronous send to a peer stopped after it
   * answered our connect fails once the resend limit is reached, and the
   * failure goes to the error handler. */
  mx_endpoint_addr_t alive;
  CHECK(mx_connect(ep, nic, PEER_EID + 1, MXT_KEY, 5000, &alive));
  mxt_stop(late);
  CHECK(mx_issend(ep, &(mx_segment_t){sbuf, 6}, 1, alive, 0x50, NULL, &req));
  CHECK(mx_set_request_timeout(ep, req, 600));
  global_calls = 0;
  t0 = mxt_now();
  st = mxt_wait(ep, &req, 20000, "send to a stopped peer");
  printf("send to a stopped peer: %s after %.1f s\n", mx_strstatus(st.code), mxt_now() - t0);
  EXPECT(st.code != MX_STATUS_SUCCESS && global_calls == 1, "status %s, handler calls %d",
         mx_strstatus(st.code), global_calls);
  mxt_kill_peer(late);
  CHECK(mx_set_request_timeout(ep, NULL, 1000));
  EXPECT_RET(mx_set_request_timeout(ep, (mx_request_t)(uintptr_t)0x1234567, 10), MX_BAD_REQUEST);

  /* disconnect: the address is gone. */
  CHECK(mx_disconnect(ep, a2));
  EXPECT_RET(mx_isend(ep, NULL, 0, a2, 1, NULL, &req), MX_BAD_ADDR_LIST);
  /* An address of another endpoint is refused. */
  EXPECT_RET(mx_isend(ep2, NULL, 0, self, 1, NULL, &req), MX_BAD_ADDR_LIST);

  /* --- the endpoint's own error handler --- */
  mx_endpoint_t ep3;
  p[0].key = MX_PARAM_ERROR_HANDLER;
  p[0].val.error_handler = ep_handler;
  CHECK(mx_open_endpoint(MX_ANY_NIC, MX_ANY_ENDPOINT, 0, p, 1, &ep3));
  global_calls = 0;
  EXPECT_RET(mx_test(ep3, NULL, &st, &result), MX_BAD_REQUEST);
  EXPECT(ep_calls == 1 && global_calls == 0, "endpoint handler %d, global %d", ep_calls,
         global_calls);
  CHECK(mx_close_endpoint(ep3));
  EXPECT_RET(mx_progress(ep3), MX_BAD_ENDPOINT);
  EXPECT(global_calls == 1, "closed endpoint goes to the global handler");

  /* --- progression, wakeup without waiters, mapper state, raw API --- */
  CHECK(mx_disable_progression(ep));
  CHECK(mx_reenable_progression(ep));
  CHECK(mx_progress(ep));
  CHECK(mx_wakeup(ep));
  mx_endpt_handle_t h;
  mx_mapper_state_t ms;
  CHECK(mx_open_board(0, &h));
  CHECK(mx__get_mapper_state(h, &ms));
  EXPECT(ms.board_number == 0 && ms.network_configured && ms.num_hosts >= 1, "mapper state");
  EXPECT(ms.mapper_mac[5] == (uint8_t)nic && ms.mapper_mac[0] == (uint8_t)(nic >> 40), "mac");
  /* The raw API on a board without a NIC (raw.c covers it on a wire):
   * sends complete but go nowhere. */
  mx_raw_endpoint_t raw, raw2;
  CHECK(mx_raw_open_endpoint(0, NULL, 0, &raw));
  EXPECT_RET(mx_raw_open_endpoint(0, NULL, 0, &raw2), MX_BUSY);
  EXPECT(mx_raw_handle(raw) == 0, "raw handle");
  EXPECT(mx_raw_handle(NULL) == MX__INVALID_HANDLE, "NULL raw handle");
  uint32_t ports;
  EXPECT_RET(mx_raw_num_ports(NULL, &ports), MX_BAD_ENDPOINT);
  uint8_t frame[64] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  frame[12] = 0x86;
  frame[13] = 0xDF;
  frame[16] = 1;
  CHECK(mx_raw_send(raw, 0, NULL, 0, frame, sizeof frame, &frame));
  mx_raw_status_t rst = MX_RAW_NO_EVENT;
  void *rctx = NULL;
  uint32_t rlen = 0;
  CHECK(mx_raw_next_event(raw, NULL, &rctx, NULL, &rlen, 5000, &rst));
  EXPECT(rst == MX_RAW_SEND_COMPLETE && rctx == (void *)&frame, "raw send completion");
  CHECK(mx_raw_close_endpoint(raw));
  EXPECT_RET(mx_raw_close_endpoint(raw), MX_BAD_ENDPOINT);

  CHECK(mx_close_endpoint(ep));
  EXPECT_RET(mx_close_endpoint(ep), MX_BAD_ENDPOINT);
  /* mx_finalize closes ep2. */
  CHECK(mx_finalize());
  mxt_kill_peer(peer);
  printf("api: ok\n");
  return 0;
}
