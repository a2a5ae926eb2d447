/* Layout and constant checks of our MX headers against the MX 0x301 ABI
 * facts (LP64; i386 values where they differ). Compiled with -std=c11:
 * every check is done twice, at compile time and at run time.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <stddef.h>
#include <stdio.h>

#include <myriexpress.h>
#include <mx_extensions.h>
#include <mx_io.h>
#include <mx_raw.h>

static int failures;
static int checks;

#define CHECK(expr, want)                                                   \
  do {                                                                      \
    unsigned long long got_ = (unsigned long long)(expr);                   \
    checks++;                                                               \
    if (got_ != (unsigned long long)(want)) {                               \
      printf("FAIL %s = %llu (0x%llx), want %llu\n", #expr, got_, got_,     \
             (unsigned long long)(want));                                   \
      failures++;                                                           \
    }                                                                       \
  } while (0)

/* Compile-time and run-time check of one equality. */
#define SAME(expr, want)                                                    \
  _Static_assert((expr) == (want), #expr " == " #want);                     \
  CHECK(expr, want)

#if defined(__LP64__)
#define LP64_OR_I386(lp64, i386) (lp64)
#else
#define LP64_OR_I386(lp64, i386) (i386)
#endif

static void types(void) {
  /* enums are 4 bytes */
  SAME(sizeof(mx_return_t), 4);
  SAME(sizeof(mx_status_code_t), 4);
  SAME(sizeof(mx_param_key_t), 4);
  SAME(sizeof(mx_get_info_key_t), 4);
  SAME(sizeof(mx_line_speed_t), 4);
  SAME(sizeof(enum mx_net_type), 4);
  SAME(sizeof(mx_unexp_handler_action_t), 4);
  SAME(sizeof(mx_host_type_t), 4);

  /* opaque handles and integer typedefs */
  SAME(sizeof(mx_endpoint_t), sizeof(void *));
  SAME(sizeof(mx_request_t), sizeof(void *));
  SAME(sizeof(mx_raw_endpoint_t), sizeof(void *));
  SAME(sizeof(mx_error_handler_t), sizeof(void *));
  SAME(sizeof(mx_unexp_handler_t), sizeof(void *));
  SAME(sizeof(mx_matching_callback_t), sizeof(void *));
  SAME(sizeof(mx_endpt_handle_t), sizeof(int));
  SAME(sizeof(mx_raw_status_t), sizeof(int));

  /* mx_endpoint_addr_t */
  SAME(sizeof(mx_endpoint_addr_t), 16);
  SAME(_Alignof(mx_endpoint_addr_t), LP64_OR_I386(8, 4));

  /* mx_segment_t */
  SAME(sizeof(mx_segment_t), LP64_OR_I386(16, 8));
  SAME(offsetof(mx_segment_t, segment_ptr), 0);
  SAME(offsetof(mx_segment_t, segment_length), LP64_OR_I386(8, 4));
  SAME(_Alignof(mx_segment_t), sizeof(void *));

  /* mx_status_t */
  SAME(sizeof(mx_status_t), LP64_OR_I386(48, 40));
  SAME(offsetof(mx_status_t, code), 0);
  SAME(offsetof(mx_status_t, source), LP64_OR_I386(8, 4));
  SAME(offsetof(mx_status_t, match_info), LP64_OR_I386(24, 20));
  SAME(offsetof(mx_status_t, msg_length), LP64_OR_I386(32, 28));
  SAME(offsetof(mx_status_t, xfer_length), LP64_OR_I386(36, 32));
  SAME(offsetof(mx_status_t, context), LP64_OR_I386(40, 36));
  SAME(_Alignof(mx_status_t), LP64_OR_I386(8, 4));

  /* mx_param_t */
  SAME(sizeof(mx_param_t), LP64_OR_I386(16, 8));
  SAME(offsetof(mx_param_t, key), 0);
  SAME(offsetof(mx_param_t, val), LP64_OR_I386(8, 4));
  SAME(offsetof(mx_param_t, val.error_handler), LP64_OR_I386(8, 4));
  SAME(offsetof(mx_param_t, val.unexp_queue_max), LP64_OR_I386(8, 4));
  SAME(offsetof(mx_param_t, val.context_id.bits), LP64_OR_I386(8, 4));
  SAME(offsetof(mx_param_t, val.context_id.shift), LP64_OR_I386(9, 5));

  /* mx_mapper_state_t */
  SAME(sizeof(mx_mapper_state_t), 36);
  SAME(_Alignof(mx_mapper_state_t), 4);
  SAME(offsetof(mx_mapper_state_t, board_number), 0);
  SAME(offsetof(mx_mapper_state_t, mapper_mac), 4);
  SAME(sizeof(((mx_mapper_state_t *)0)->mapper_mac), 6);
  SAME(offsetof(mx_mapper_state_t, iport), 10);
  SAME(offsetof(mx_mapper_state_t, map_version), 12);
  SAME(offsetof(mx_mapper_state_t, num_hosts), 16);
  SAME(offsetof(mx_mapper_state_t, network_configured), 20);
  SAME(offsetof(mx_mapper_state_t, routes_valid), 24);
  SAME(offsetof(mx_mapper_state_t, level), 28);
  SAME(offsetof(mx_mapper_state_t, flags), 32);
}

static void constants(void) {
  SAME(MX_API, 0x301);
  SAME(MX_MAX_STR_LEN, 128);
  SAME(MX_ANY_NIC, 0xffffffffU);
  SAME(MX_ANY_ENDPOINT, 0xffffffffU);
  SAME(MX_INFINITE, 0);
  SAME(MX_MATCH_MASK_NONE, 0xffffffffffffffffULL);
  SAME(sizeof(MX_MATCH_MASK_NONE), 8);
  SAME(MX_CONTEXT_ID_BITS_MAX, 16);
  SAME(MX_MAX_SEGMENTS, 256);
  SAME(MX_MAX_HOSTNAME_LEN, 80);
  SAME(MX_SIZEOF_ADDR, 16);
  SAME(MX_HAS_NET_TYPE, 1);
  SAME(MX_HAS_ICONNECT_V2, 1);
  SAME(MX__INVALID_HANDLE, -1);
  SAME(MX_RAW_NO_EVENT, 0);
  SAME(MX_RAW_SEND_COMPLETE, 1);
  SAME(MX_RAW_RECV_COMPLETE, 2);
  SAME(MX_RECV_CONTINUE, 0);
  SAME(MX_RECV_FINISHED, 1);

  SAME(MX_SUCCESS, 0);
  SAME(MX_BAD_BAD_BAD, 1);
  SAME(MX_FAILURE, 2);
  SAME(MX_ALREADY_INITIALIZED, 3);
  SAME(MX_NOT_INITIALIZED, 4);
  SAME(MX_NO_DEV, 5);
  SAME(MX_NO_DRIVER, 6);
  SAME(MX_NO_PERM, 7);
  SAME(MX_BOARD_UNKNOWN, 8);
  SAME(MX_BAD_ENDPOINT, 9);
  SAME(MX_BAD_SEG_LIST, 10);
  SAME(MX_BAD_SEG_MEM, 11);
  SAME(MX_BAD_SEG_CNT, 12);
  SAME(MX_BAD_REQUEST, 13);
  SAME(MX_BAD_MATCH_MASK, 14);
  SAME(MX_NO_RESOURCES, 15);
  SAME(MX_BAD_ADDR_LIST, 16);
  SAME(MX_BAD_ADDR_COUNT, 17);
  SAME(MX_BAD_ROOT, 18);
  SAME(MX_NOT_COMPLETED, 19);
  SAME(MX_BUSY, 20);
  SAME(MX_BAD_INFO_KEY, 21);
  SAME(MX_BAD_INFO_VAL, 22);
  SAME(MX_BAD_NIC, 23);
  SAME(MX_BAD_PARAM_LIST, 24);
  SAME(MX_BAD_PARAM_NAME, 25);
  SAME(MX_BAD_PARAM_VAL, 26);
  SAME(MX_BAD_HOSTNAME_ARGS, 27);
  SAME(MX_HOST_NOT_FOUND, 28);
  SAME(MX_REQUEST_PENDING, 29);
  SAME(MX_TIMEOUT, 30);
  SAME(MX_NO_MATCH, 31);
  SAME(MX_BAD_ENDPOINT_ID, 32);
  SAME(MX_CONNECTION_FAILED, 33);
  SAME(MX_BAD_CONNECTION_KEY, 34);
  SAME(MX_BAD_INFO_LENGTH, 35);
  SAME(MX_NIC_NOT_FOUND, 36);
  SAME(MX_BAD_KERNEL_VERSION, 37);
  SAME(MX_BAD_LIB_VERSION, 38);
  SAME(MX_NIC_DEAD, 39);
  SAME(MX_CANCEL_NOT_SUPPORTED, 40);
  SAME(MX_CLOSE_IN_HANDLER, 41);
  SAME(MX_BAD_MATCHING_FOR_CONTEXT_ID_MASK, 42);
  SAME(MX_NOT_SUPPORTED_WITH_CONTEXT_ID, 43);

  SAME(MX_STATUS_SUCCESS, 0);
  SAME(MX_STATUS_PENDING, 1);
  SAME(MX_STATUS_BUFFERED, 2);
  SAME(MX_STATUS_REJECTED, 3);
  SAME(MX_STATUS_TIMEOUT, 4);
  SAME(MX_STATUS_TRUNCATED, 5);
  SAME(MX_STATUS_CANCELLED, 6);
  SAME(MX_STATUS_ENDPOINT_UNKNOWN, 7);
  SAME(MX_STATUS_ENDPOINT_CLOSED, 8);
  SAME(MX_STATUS_ENDPOINT_UNREACHABLE, 9);
  SAME(MX_STATUS_BAD_SESSION, 10);
  SAME(MX_STATUS_BAD_KEY, 11);
  SAME(MX_STATUS_BAD_ENDPOINT, 12);
  SAME(MX_STATUS_BAD_RDMAWIN, 13);
  SAME(MX_STATUS_ABORTED, 14);
  SAME(MX_STATUS_EVENTQ_FULL, 15);
  SAME(MX_STATUS_NO_RESOURCES, 16);

  SAME(MX_PARAM_ERROR_HANDLER, 0);
  SAME(MX_PARAM_UNEXP_QUEUE_MAX, 1);
  SAME(MX_PARAM_CONTEXT_ID, 2);

  SAME(MX_NIC_COUNT, 1);
  SAME(MX_NIC_IDS, 2);
  SAME(MX_MAX_NATIVE_ENDPOINTS, 3);
  SAME(MX_NATIVE_REQUESTS, 4);
  SAME(MX_COUNTERS_COUNT, 5);
  SAME(MX_COUNTERS_LABELS, 6);
  SAME(MX_COUNTERS_VALUES, 7);
  SAME(MX_PRODUCT_CODE, 8);
  SAME(MX_PART_NUMBER, 9);
  SAME(MX_SERIAL_NUMBER, 10);
  SAME(MX_PORT_COUNT, 11);
  SAME(MX_PIO_SEND_MAX, 12);
  SAME(MX_COPY_SEND_MAX, 13);
  SAME(MX_NUMA_NODE, 14);
  SAME(MX_NET_TYPE, 15);
  SAME(MX_LINE_SPEED, 16);

  SAME(MX_SPEED_2G, 0);
  SAME(MX_SPEED_10G, 1);
  SAME(MX_SPEED_OPEN_MX, 2);
  SAME(MX_NET_MYRI, 0);
  SAME(MX_NET_ETHER, 1);

  SAME(MX_HOST_GM, 1);
  SAME(MX_HOST_XM, 2);
  SAME(MX_HOST_MX, 3);
  SAME(MX_HOST_MXvM, 4);
}

static void macros(void) {
  uint64_t v64 = 0x0123456789abcdefULL;
  uint32_t v32 = 0xdeadbeefU;
  CHECK(MX_U32(v64), 0x01234567U);
  CHECK(MX_L32(v64), 0x89abcdefU);
  CHECK(MX_U32(v32), 0);
  CHECK(MX_L32(v32), 0xdeadbeefU);
  CHECK(sizeof(MX_U32(v64)), 4);
  CHECK(sizeof(MX_L32(v64)), 4);
}

/* Open-MX's myriexpress.h brings <inttypes.h>: classic programs use
   PRIx64 with only it included (this file includes no <inttypes.h>). */
static void printf_macros(void) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRIx64 ":%" PRIu32, (uint64_t)0xab, (uint32_t)7);
  CHECK(buf[0] == 'a' && buf[1] == 'b' && buf[3] == '7', 1);
}

static void raw_constants(void) {
  CHECK(MX_RAW_POLL_SUPPORTED, 1);
  CHECK(MX_DEAD_RECOVERABLE_SRAM_PARITY_ERROR, 10);
  CHECK(MX_DEAD_SRAM_PARITY_ERROR, 11);
  CHECK(MX_DEAD_WATCHDOG_TIMEOUT, 12);
  CHECK(MX_DEAD_COMMAND_TIMEOUT, 13);
  CHECK(MX_DEAD_ENDPOINT_CLOSE_TIMEOUT, 14);
  CHECK(MX_DEAD_ROUTE_UPDATE_TIMEOUT, 15);
  CHECK(MX_DEAD_PCI_PARITY_ERROR, 16);
  CHECK(MX_DEAD_PCI_MASTER_ABORT, 17);
}

int main(void) {
  types();
  constants();
  macros();
  printf_macros();
  raw_constants();
  if (failures) {
    printf("layout: %d of %d checks FAILED\n", failures, checks);
    return 1;
  }
  printf("layout: ok (%d checks)\n", checks);
  return 0;
}
