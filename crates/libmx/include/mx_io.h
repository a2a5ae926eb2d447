/*
 * mx_io.h - low-level board access types and the internal entry points
 * that MPI implementations probe for, as implemented by Xen2MX-rs.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#ifndef MX_IO_H
#define MX_IO_H

#include <stddef.h>
#include <stdlib.h>

#include "myriexpress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A handle on a board, as returned by mx_open_board(). */
typedef int mx_endpt_handle_t;
#define MX__INVALID_HANDLE (-1)

/* What the fabric mapper last reported for a board (36 bytes). */
typedef struct {
  uint32_t board_number;      /* offset 0 */
  uint8_t mapper_mac[6];      /* offset 4 */
  uint16_t iport;             /* offset 10 */
  uint32_t map_version;       /* offset 12 */
  uint32_t num_hosts;         /* offset 16 */
  uint32_t network_configured;/* offset 20 */
  uint32_t routes_valid;      /* offset 24 */
  uint32_t level;             /* offset 28 */
  uint32_t flags;             /* offset 32 */
} mx_mapper_state_t;

/* Open a board for the calls below; always succeeds. */
extern mx_return_t mx_open_board(int board_number, mx_endpt_handle_t *handle);

/* Fill *state with the mapper information of the board behind handle. */
extern mx_return_t mx__get_mapper_state(mx_endpt_handle_t handle,
                                        mx_mapper_state_t *state);

/* Drop cached registrations of [ptr, ptr+size); returns 0. */
extern int mx__regcache_clean(void *ptr, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MX_IO_H */
