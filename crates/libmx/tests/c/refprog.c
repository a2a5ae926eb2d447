/* A program "built against the reference library" (linked against
 * refstub.c's library) that must run on ours.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <stdio.h>

#include <myriexpress.h>

int main(void) {
  mx_return_t ret;
  mx_error_handler_t prev = mx_set_error_handler(MX_ERRORS_RETURN);
  if (prev != MX_ERRORS_ARE_FATAL) {
    printf("unexpected initial handler\n");
    return 1;
  }
  ret = mx_init();
  printf("mx_init: %s\n", mx_strerror(ret));
  if (ret != MX_SUCCESS)
    return 1;
  ret = mx_finalize();
  if (ret != MX_SUCCESS)
    return 1;
  printf("refprog: ok\n");
  return 0;
}
