/* Library set-up, error handlers and code descriptions, through our
 * headers and libmyriexpress.so. The mode (argv[1]) selects a scenario:
 *   main               everything that must return (exit 0 = pass)
 *   fatal-after-init   default handler after mx_init must exit the process
 *   fatal-before-init  a failing mx_init without any handler must exit
 *   env-return         run with MX_ERRORS_ARE_FATAL=0: errors return
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <stdio.h>
#include <string.h>

#include <myriexpress.h>
#include <mx_io.h>

static int failures;

#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      printf("FAIL line %d: %s\n", __LINE__, #cond);                        \
      failures++;                                                           \
    }                                                                       \
  } while (0)

static int handler_calls;
static mx_return_t handler_code;
static char handler_msg[256];

static mx_return_t counting_handler(char *msg, mx_return_t ret) {
  handler_calls++;
  handler_code = ret;
  snprintf(handler_msg, sizeof handler_msg, "%s", msg ? msg : "(null)");
  return MX_BUSY; /* becomes the failing call's return value */
}

static mx_return_t call_iput(void) {
  mx_endpoint_addr_t addr;
  mx_request_t req = NULL;
  memset(&addr, 0, sizeof addr);
  return mx_iput(NULL, NULL, 0, addr, 0, NULL, &req);
}

static void strings(void) {
  const char *errs[44];
  const char *sts[17];
  int i, j;
  for (i = 0; i < 44; i++) {
    errs[i] = mx_strerror((mx_return_t)i);
    EXPECT(errs[i] != NULL && errs[i][0] != '\0');
  }
  for (i = 0; i < 44; i++)
    for (j = i + 1; j < 44; j++)
      if (errs[i] && errs[j] && strcmp(errs[i], errs[j]) == 0) {
        printf("FAIL: mx_strerror(%d) == mx_strerror(%d)\n", i, j);
        failures++;
      }
  for (i = 0; i < 17; i++) {
    sts[i] = mx_strstatus((mx_status_code_t)i);
    EXPECT(sts[i] != NULL && sts[i][0] != '\0');
  }
  for (i = 0; i < 17; i++)
    for (j = i + 1; j < 17; j++)
      if (sts[i] && sts[j] && strcmp(sts[i], sts[j]) == 0) {
        printf("FAIL: mx_strstatus(%d) == mx_strstatus(%d)\n", i, j);
        failures++;
      }
  EXPECT(mx_strerror((mx_return_t)1000) != NULL);
  EXPECT(mx_strstatus((mx_status_code_t)1000) != NULL);
  EXPECT(mx_strerror((mx_return_t)-1) != NULL);
  printf("strerror(MX_BAD_LIB_VERSION) = %s\n", mx_strerror(MX_BAD_LIB_VERSION));
  printf("strstatus(MX_STATUS_TRUNCATED) = %s\n",
         mx_strstatus(MX_STATUS_TRUNCATED));
}

static int mode_main(void) {
  mx_error_handler_t prev;
  mx_endpt_handle_t handle = MX__INVALID_HANDLE;
  mx_request_t req = NULL;
  uint32_t result = 0;

  /* Before init the handler is the fatal one. */
  prev = mx_set_error_handler(MX_ERRORS_RETURN);
  EXPECT(prev == MX_ERRORS_ARE_FATAL);
  EXPECT(MX_ERRORS_ARE_FATAL != NULL && MX_ERRORS_RETURN != NULL);
  EXPECT(MX_ERRORS_ARE_FATAL != MX_ERRORS_RETURN);

  /* API level checks. */
  EXPECT(mx__init_api(0x200) == MX_BAD_LIB_VERSION);
  EXPECT(mx__init_api(0) == MX_BAD_LIB_VERSION);
  EXPECT(mx__init_api(0x401) == MX_BAD_LIB_VERSION);
  EXPECT(mx_finalize() == MX_NOT_INITIALIZED);

  /* Init, twice. The handler set before init is kept. */
  EXPECT(mx_init() == MX_SUCCESS);
  EXPECT(mx_init() == MX_ALREADY_INITIALIZED);
  EXPECT(mx__init_api(MX_API) == MX_ALREADY_INITIALIZED);

  /* A handler's return value becomes the call's return value. */
  prev = mx_set_error_handler(counting_handler);
  EXPECT(prev == MX_ERRORS_RETURN);
  EXPECT(call_iput() == MX_BUSY);
  EXPECT(handler_calls == 1);
  EXPECT(handler_code == MX_FAILURE);
  EXPECT(strstr(handler_msg, "mx_iput") != NULL);
  printf("handler message: %s\n", handler_msg);

  prev = mx_set_error_handler(MX_ERRORS_RETURN);
  EXPECT(prev == counting_handler);

  /* Obsolete entry points fail; MPI-probed ones succeed. */
  EXPECT(call_iput() == MX_FAILURE);
  {
    mx_endpoint_addr_t addr;
    memset(&addr, 0, sizeof addr);
    EXPECT(mx_iget(NULL, NULL, 0, addr, 0, NULL, &req) == MX_FAILURE);
  }
  EXPECT(mx_buffered(NULL, &req, 0, &result) == MX_FAILURE);
  EXPECT(mx_register_unexp_callback(NULL, NULL, NULL) == MX_FAILURE);
  EXPECT(mx_open_board(0, &handle) == MX_SUCCESS);
  EXPECT(handle == 0);
  EXPECT(mx_open_board(0, NULL) == MX_BAD_PARAM_VAL);
  EXPECT(mx__regcache_clean(NULL, 0) == 0);
  EXPECT(handler_calls == 1);

  strings();

  EXPECT(mx_finalize() == MX_SUCCESS);
  EXPECT(mx_finalize() == MX_NOT_INITIALIZED);
  EXPECT(mx_init() == MX_SUCCESS);
  EXPECT(mx_finalize() == MX_SUCCESS);

  if (failures) {
    printf("strings_init: %d FAILED\n", failures);
    return 1;
  }
  printf("strings_init: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "main";
  if (strcmp(mode, "main") == 0)
    return mode_main();
  if (strcmp(mode, "fatal-after-init") == 0) {
    if (mx_init() != MX_SUCCESS)
      return 3;
    call_iput();
    printf("survived a fatal error\n");
    return 0;
  }
  if (strcmp(mode, "fatal-before-init") == 0) {
    mx__init_api(0x200);
    printf("survived a fatal error\n");
    return 0;
  }
  if (strcmp(mode, "env-return") == 0) {
    mx_return_t ret;
    if (mx_init() != MX_SUCCESS)
      return 3;
    ret = call_iput();
    printf("mx_iput returned %d (%s)\n", (int)ret, mx_strerror(ret));
    mx_finalize();
    return ret == MX_FAILURE ? 0 : 1;
  }
  printf("unknown mode %s\n", mode);
  return 2;
}
