/*
 * mx_extensions.h - MX API extensions (non-blocking connect, unexpected
 * message handlers, progression control, address contexts, ...), as
 * implemented by Xen2MX-rs.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#ifndef MX_EXTENSIONS_H
#define MX_EXTENSIONS_H

#include "myriexpress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mx_iconnect() takes a match value and a context and completes as a
 * request whose status source is the new address. */
#define MX_HAS_ICONNECT_V2 1

extern mx_return_t mx_iconnect(mx_endpoint_t endpoint, uint64_t nic_id,
                               uint32_t endpoint_id, uint32_t key,
                               uint64_t match_info, void *context,
                               mx_request_t *request);
extern mx_return_t mx_disconnect(mx_endpoint_t endpoint,
                                 mx_endpoint_addr_t addr);

/* What an unexpected-message handler tells the library to do next. */
enum mx_unexp_handler_action {
  MX_RECV_CONTINUE = 0, /* match again, else queue as unexpected */
  MX_RECV_FINISHED = 1  /* the message is consumed: drop it */
};
typedef enum mx_unexp_handler_action mx_unexp_handler_action_t;

/* Called for a message that matches no posted receive. data_if_available
 * points to the payload when the whole message is already at hand. */
typedef mx_unexp_handler_action_t (*mx_unexp_handler_t)(
    void *context, mx_endpoint_addr_t source, uint64_t match_value,
    uint32_t length, void *data_if_available);

extern mx_return_t mx_register_unexp_handler(mx_endpoint_t endpoint,
                                             mx_unexp_handler_t handler,
                                             void *context);

/* Free the request once it completes; it is never reported. */
extern mx_return_t mx_forget(mx_endpoint_t endpoint, mx_request_t *request);

/* Make progress on the endpoint without completing anything. */
extern mx_return_t mx_progress(mx_endpoint_t endpoint);

/* A per-peer pointer for the application, initially NULL. */
extern mx_return_t mx_set_endpoint_addr_context(
    mx_endpoint_addr_t endpoint_addr, void *context);
extern mx_return_t mx_get_endpoint_addr_context(
    mx_endpoint_addr_t endpoint_addr, void **context);

/* Resend/pull time limit for one request, or (request == NULL) the
 * endpoint default. */
extern mx_return_t mx_set_request_timeout(mx_endpoint_t endpoint,
                                          mx_request_t request,
                                          uint32_t milli_seconds);

/* Like mx_decompose_endpoint_addr(), also returning the session id. */
extern mx_return_t mx_decompose_endpoint_addr2(
    mx_endpoint_addr_t endpoint_addr, uint64_t *nic_id,
    uint32_t *endpoint_id, uint32_t *session_id);

#ifdef __cplusplus
}
#endif

#endif /* MX_EXTENSIONS_H */
