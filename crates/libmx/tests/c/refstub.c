/* A stand-in for the REFERENCE libmyriexpress, used only at link time:
 * linked with mx.map (symbol versions) and the reference's soname, so a
 * program linked against it records the same versioned references
 * (mx__init_api@MX_0.92, ...) as one built against the real thing. At run
 * time our library must satisfy them. The bodies are never executed.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <myriexpress.h>

static mx_return_t stub_handler(char *msg, mx_return_t ret) {
  (void)msg;
  return ret;
}

const mx_error_handler_t MX_ERRORS_ARE_FATAL = stub_handler;
const mx_error_handler_t MX_ERRORS_RETURN = stub_handler;

mx_return_t mx__init_api(int api) {
  (void)api;
  return MX_BAD_BAD_BAD;
}

mx_return_t mx_finalize(void) { return MX_BAD_BAD_BAD; }

mx_error_handler_t mx_set_error_handler(mx_error_handler_t handler) {
  return handler;
}

const char *mx_strerror(mx_return_t ret) {
  (void)ret;
  return "stub";
}
