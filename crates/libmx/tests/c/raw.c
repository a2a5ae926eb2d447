/* The MX raw API between two hosts (two backends on one wire), as a
 * fabric mapper uses it, with MX_ERRORS_RETURN.
 *
 *   raw echo <count>        open the board's raw endpoint, print "ready",
 *                           send every received frame back to its sender
 *                           (same body), <count> times, then close.
 *   raw ping <peer nic id>  the checks: open errors, MX_BUSY, handle,
 *                           ports, line speed, routes, timeouts, refused
 *                           frames, frames of every length to the echo
 *                           and back (whole Ethernet frames, byte-exact,
 *                           each send completing once with its context),
 *                           truncation, 40 sends in flight (more than the
 *                           send queue holds), board and peer names, close.
 *
 * A frame: dst MAC, src MAC, EtherType 0x86DF, peer index, type RAW (1),
 * then a pattern; bytes 32..39 stay zero (nic id 0) so that no backend
 * takes our frames for mapper announcements.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include <mx_io.h>
#include <mx_raw.h>

#include "mxt.h"

#define MAX_FRAME 1514 /* the test wire's MTU (1500) + Ethernet header */
#define IN_FLIGHT 40
#define ECHOES (5 + 1 + IN_FLIGHT)

static void mac_of(uint64_t nic, uint8_t mac[6]) {
  for (int i = 0; i < 6; i++) mac[i] = (uint8_t)(nic >> (40 - 8 * i));
}

/* A frame of `len` bytes to `dst` carrying pattern `salt`. */
static void build(uint8_t *f, uint32_t len, const uint8_t dst[6], uint64_t salt) {
  memset(f, 0, len);
  memcpy(f, dst, 6);
  memset(f + 6, 0x5a, 6); /* junk: the backend stamps the board's MAC */
  f[12] = 0x86;
  f[13] = 0xDF;
  f[16] = 1;
  for (uint32_t i = 17; i < len; i++)
    if (i < 32 || i >= 40) f[i] = mxt_byte(salt, i);
}

static int body_ok(const uint8_t *f, uint32_t len, uint64_t salt) {
  for (uint32_t i = 17; i < len; i++) {
    uint8_t want = (i < 32 || i >= 40) ? mxt_byte(salt, i) : 0;
    if (f[i] != want) return 0;
  }
  return 1;
}

/* The next event, within `ms` milliseconds (fails otherwise). */
static mx_raw_status_t next(mx_raw_endpoint_t raw, void **ctx, uint8_t *buf, uint32_t *len,
                            uint32_t cap, unsigned ms) {
  double end = mxt_now() + ms / 1000.0;
  for (;;) {
    mx_raw_status_t st = -1;
    uint32_t port = 7;
    *len = cap;
    CHECK(mx_raw_next_event(raw, &port, ctx, buf, len, 100, &st));
    if (st == MX_RAW_RECV_COMPLETE) EXPECT(port == 0, "incoming port %u", port);
    if (st != MX_RAW_NO_EVENT) return st;
    EXPECT(mxt_now() < end, "no raw event within %u ms", ms);
  }
}

static int echo(int count) {
  mx_raw_endpoint_t raw;
  static uint8_t buf[MAX_FRAME];
  CHECK(mx_raw_open_endpoint(0, NULL, 0, &raw));
  printf("raw-echo: ready\n");
  fflush(stdout);
  int echoed = 0, completed = 0;
  while (echoed < count || completed < echoed) {
    void *ctx = NULL;
    uint32_t len;
    mx_raw_status_t st = next(raw, &ctx, buf, &len, sizeof buf, 20000);
    if (st == MX_RAW_SEND_COMPLETE) {
      EXPECT(ctx == (void *)(uintptr_t)(0xec00 + completed), "echo completion %d: ctx %p",
             completed, ctx);
      completed++;
      continue;
    }
    EXPECT(st == MX_RAW_RECV_COMPLETE, "status %d", st);
    EXPECT(len >= 60 && buf[12] == 0x86 && buf[13] == 0xDF && buf[16] == 1,
           "echo got a frame of %u bytes that is not ours", len);
    uint8_t back[6];
    memcpy(back, buf + 6, 6);
    memcpy(buf + 6, buf, 6); /* (the backend stamps it anyway) */
    memcpy(buf, back, 6);
    CHECK(mx_raw_send(raw, 0, NULL, 0, buf, len, (void *)(uintptr_t)(0xec00 + echoed)));
    echoed++;
  }
  CHECK(mx_raw_close_endpoint(raw));
  CHECK(mx_finalize());
  printf("raw-echo: ok (%d frames)\n", echoed);
  return 0;
}

/* Send a frame of `len` bytes with context `ctx` and wait for both its
 * completion and the echo (in either order); returns the echo's length. */
static uint32_t round_trip(mx_raw_endpoint_t raw, const uint8_t me[6], const uint8_t peer[6],
                           uint32_t len, uint64_t salt, uint32_t cap) {
  static uint8_t f[MAX_FRAME], got[MAX_FRAME + 16];
  build(f, len, peer, salt);
  void *want = (void *)(uintptr_t)(0x1000 + salt);
  CHECK(mx_raw_send(raw, 0, NULL, 0, f, len, want));
  int done = 0, echoed = 0;
  uint32_t glen = 0;
  while (!done || !echoed) {
    void *ctx = NULL;
    memset(got, 0xcc, sizeof got);
    mx_raw_status_t st = next(raw, &ctx, got, &glen, cap, 5000);
    if (st == MX_RAW_SEND_COMPLETE) {
      EXPECT(!done && ctx == want, "completion of %u bytes: ctx %p, want %p", len, ctx, want);
      done = 1;
    } else {
      EXPECT(st == MX_RAW_RECV_COMPLETE && !echoed, "status %d", st);
      uint32_t full = len < 60 ? 60 : len;
      EXPECT(glen == (full < cap ? full : cap), "echo of %u bytes: %u bytes (cap %u)", len,
             glen, cap);
      EXPECT(memcmp(got, me, 6) == 0 && memcmp(got + 6, peer, 6) == 0,
             "echo of %u bytes: wrong MACs", len);
      EXPECT(got[12] == 0x86 && got[13] == 0xDF && got[14] == 0 && got[15] == 0 && got[16] == 1,
             "echo of %u bytes: wrong head", len);
      EXPECT(body_ok(got, glen < len ? glen : len, salt), "echo of %u bytes: body differs",
             len);
      for (uint32_t i = len; i < glen; i++) EXPECT(got[i] == 0, "padding byte %u", i);
      EXPECT(got[glen] == 0xcc, "byte %u after the capacity was written", glen);
      echoed = 1;
    }
  }
  return glen;
}

static int ping(uint64_t peer_nic) {
  mx_set_error_handler(MX_ERRORS_RETURN);
  CHECK(mx_init());
  uint64_t my_nic;
  CHECK(mx_board_number_to_nic_id(0, &my_nic));
  uint8_t me[6], peer[6];
  mac_of(my_nic, me);
  mac_of(peer_nic, peer);

  /* --- open --- */
  mx_raw_endpoint_t raw, bad;
  mx_param_t p;
  memset(&p, 0, sizeof p);
  EXPECT_RET(mx_raw_open_endpoint(0, NULL, 0, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_open_endpoint(0, NULL, 1, &bad), MX_BAD_PARAM_LIST);
  p.key = (mx_param_key_t)9;
  EXPECT_RET(mx_raw_open_endpoint(0, &p, 1, &bad), MX_BAD_PARAM_NAME);
  EXPECT_RET(mx_raw_open_endpoint(7, NULL, 0, &bad), MX_BOARD_UNKNOWN);
  CHECK(mx_raw_open_endpoint(0, NULL, 0, &raw));
  EXPECT_RET(mx_raw_open_endpoint(0, NULL, 0, &bad), MX_BUSY);
  EXPECT(mx_raw_handle(raw) == 0, "handle %d", mx_raw_handle(raw));
  EXPECT(mx_raw_handle(NULL) == MX__INVALID_HANDLE, "NULL handle");
  EXPECT(mx_raw_handle((mx_raw_endpoint_t)&p) == MX__INVALID_HANDLE, "garbage handle");

  /* --- ports, speed, routes --- */
  uint32_t ports = 0;
  mx_line_speed_t speed = MX_SPEED_2G;
  CHECK(mx_raw_num_ports(raw, &ports));
  EXPECT(ports == 1, "%u ports", ports);
  CHECK(mx_raw_line_speed(raw, &speed));
  EXPECT(speed == MX_SPEED_OPEN_MX, "line speed %d", (int)speed);
  EXPECT_RET(mx_raw_num_ports(raw, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_line_speed(raw, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_num_ports((mx_raw_endpoint_t)&p, &ports), MX_BAD_ENDPOINT);
  uint8_t route[4] = {0x80, 0x81, 0x82, 0x83};
  CHECK(mx_raw_set_route_begin(raw));
  CHECK(mx_raw_set_route(raw, peer_nic, route, 4, 0, 0, MX_HOST_MX));
  CHECK(mx_raw_set_route_mag(raw, peer_nic, route, 4, 0, 0, MX_HOST_MX, 3));
  CHECK(mx_raw_clear_routes(raw, peer_nic, 0));
  CHECK(mx_raw_clear_routes(raw, peer_nic, 0)); /* nothing left to clear */
  CHECK(mx_raw_set_route(raw, peer_nic, route, 4, 0, 1, MX_HOST_MX));
  CHECK(mx_raw_set_route(raw, peer_nic, NULL, 0, 0, 0, MX_HOST_MX));
  EXPECT_RET(mx_raw_set_route(raw, peer_nic, NULL, 4, 0, 0, MX_HOST_MX), MX_BAD_PARAM_VAL);
  static uint8_t long_route[65];
  EXPECT_RET(mx_raw_set_route(raw, peer_nic, long_route, sizeof long_route, 0, 0, MX_HOST_MX),
             MX_BAD_PARAM_VAL);
  CHECK(mx_raw_set_route(raw, peer_nic, long_route, 64, 0, 2, MX_HOST_MX));
  EXPECT_RET(mx_raw_set_route(raw, 0, route, 4, 0, 0, MX_HOST_MX), MX_BAD_NIC);
  EXPECT_RET(mx_raw_set_route_mag(raw, 0x010000000001ULL, route, 4, 0, 0, MX_HOST_MX, 1),
             MX_BAD_NIC);
  /* Routes to one peer are bounded (16): replacing one is always possible. */
  mx_return_t full = MX_SUCCESS;
  for (uint32_t mag = 1; mag <= 20 && full == MX_SUCCESS; mag++)
    full = mx_raw_set_route_mag(raw, peer_nic, route, 4, 0, 0, MX_HOST_MX, mag);
  EXPECT(full == MX_NO_RESOURCES, "17th route to a peer: %d", (int)full);
  CHECK(mx_raw_set_route_mag(raw, peer_nic, route, 2, 0, 0, MX_HOST_MX, 1));
  /* Removing the peer drops them all: 16 new ones fit again. */
  CHECK(mx_raw_remove_peer(raw, peer_nic));
  for (uint32_t mag = 1; mag <= 16; mag++)
    CHECK(mx_raw_set_route_mag(raw, peer_nic, route, 4, 0, 0, MX_HOST_MX, mag));
  CHECK(mx_raw_remove_peer(raw, peer_nic));
  CHECK(mx_raw_remove_peer(raw, peer_nic)); /* a peer without routes */
  EXPECT_RET(mx_raw_remove_peer(NULL, peer_nic), MX_BAD_ENDPOINT);
  EXPECT_RET(mx_raw_remove_peer((mx_raw_endpoint_t)&p, peer_nic), MX_BAD_ENDPOINT);
  char reply_info[32] = "mapper reply info";
  CHECK(mx_raw_set_nic_reply_info(raw, reply_info, sizeof reply_info));
  CHECK(mx_raw_set_nic_reply_info(raw, NULL, 0));
  EXPECT_RET(mx_raw_set_nic_reply_info(raw, NULL, 8), MX_BAD_PARAM_VAL);
  static uint8_t big_info[4097];
  EXPECT_RET(mx_raw_set_nic_reply_info(raw, big_info, sizeof big_info), MX_BAD_PARAM_VAL);
  CHECK(mx_raw_set_nic_reply_info(raw, big_info, 4096));
  EXPECT_RET(mx_raw_set_nic_reply_info(NULL, reply_info, 4), MX_BAD_ENDPOINT);
  CHECK(mx_raw_set_route_end(raw));
  CHECK(mx_raw_set_map_version(raw, 0, my_nic, 2, 2, 1));
  EXPECT_RET(mx_raw_set_route_begin(NULL), MX_BAD_ENDPOINT);

  /* --- timeouts: 0 does not wait, 50 ms waits about that long --- */
  static uint8_t buf[MAX_FRAME + 16];
  uint32_t len = sizeof buf;
  mx_raw_status_t st = -1;
  void *ctx = NULL;
  double t0 = mxt_now();
  CHECK(mx_raw_next_event(raw, NULL, &ctx, buf, &len, 0, &st));
  EXPECT(st == MX_RAW_NO_EVENT && mxt_now() - t0 < 0.05, "timeout 0: status %d after %.3f s",
         st, mxt_now() - t0);
  t0 = mxt_now();
  CHECK(mx_raw_next_event(raw, NULL, &ctx, buf, &len, 50, &st));
  double waited = mxt_now() - t0;
  EXPECT(st == MX_RAW_NO_EVENT && waited >= 0.045 && waited < 2.0,
         "timeout 50: status %d after %.3f s", st, waited);
  EXPECT_RET(mx_raw_next_event(raw, NULL, &ctx, buf, &len, 0, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_next_event(raw, NULL, &ctx, buf, NULL, 0, &st), MX_BAD_PARAM_VAL);
  len = 10;
  EXPECT_RET(mx_raw_next_event(raw, NULL, &ctx, NULL, &len, 0, &st), MX_BAD_PARAM_VAL);

  /* --- frames the raw API refuses (and no event follows them) --- */
  static uint8_t f[MAX_FRAME + 2];
  build(f, 64, peer, 1);
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, NULL, 64, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_send(raw, 1, NULL, 0, f, 64, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, f, 16, NULL), MX_BAD_PARAM_VAL);
  build(f, MAX_FRAME + 1, peer, 1);
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, f, MAX_FRAME + 1, NULL), MX_BAD_PARAM_VAL);
  build(f, 64, peer, 1);
  f[13] = 0x00; /* EtherType 0x8600 */
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, f, 64, NULL), MX_BAD_PARAM_VAL);
  build(f, 64, peer, 1);
  f[16] = 37; /* an MX TINY: not for the raw API */
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, f, 64, NULL), MX_BAD_PARAM_VAL);
  EXPECT_RET(mx_raw_send(NULL, 0, NULL, 0, f, 64, NULL), MX_BAD_ENDPOINT);
  len = sizeof buf;
  CHECK(mx_raw_next_event(raw, NULL, &ctx, buf, &len, 20, &st));
  EXPECT(st == MX_RAW_NO_EVENT, "an event after refused sends: %d", st);

  /* --- round trips of every length a mapper uses --- */
  uint32_t lens[5] = {17, 60, 64, 300, MAX_FRAME};
  for (int i = 0; i < 5; i++) round_trip(raw, me, peer, lens[i], 10 + i, MAX_FRAME + 16);
  /* truncation: a 300-byte echo into 100 bytes of room */
  uint32_t got = round_trip(raw, me, peer, 300, 20, 100);
  EXPECT(got == 100, "truncated to %u", got);

  /* --- 40 sends in flight (the send queue holds 32): every completion
   * once with its context, every echo once, nothing lost --- */
  static uint8_t frames[IN_FLIGHT][200];
  for (int i = 0; i < IN_FLIGHT; i++) {
    build(frames[i], 200, peer, 100 + i);
    CHECK(mx_raw_send(raw, 0, NULL, 0, frames[i], 200, (void *)(uintptr_t)(0x2000 + i)));
  }
  int completions[IN_FLIGHT] = {0}, echoes[IN_FLIGHT] = {0}, nc = 0, ne = 0;
  while (nc < IN_FLIGHT || ne < IN_FLIGHT) {
    uint32_t l;
    st = next(raw, &ctx, buf, &l, sizeof buf, 10000);
    if (st == MX_RAW_SEND_COMPLETE) {
      uintptr_t c = (uintptr_t)ctx - 0x2000;
      EXPECT(c < IN_FLIGHT && !completions[c], "completion ctx %p", ctx);
      EXPECT(c == (uintptr_t)nc, "completion %d out of order (%lu)", nc, (unsigned long)c);
      completions[c] = 1;
      nc++;
    } else {
      EXPECT(l == 200, "echo length %u", l);
      int which = -1;
      for (int i = 0; i < IN_FLIGHT; i++)
        if (!echoes[i] && body_ok(buf, 200, 100 + i)) which = i;
      EXPECT(which >= 0, "echo %d matches no frame sent", ne);
      echoes[which] = 1;
      ne++;
    }
  }

  /* --- names: the board's own, and a peer's --- */
  uint64_t n = 0;
  char name[MX_MAX_HOSTNAME_LEN];
  CHECK(mx_raw_set_hostname(raw, "raw-renamed:0"));
  CHECK(mx_hostname_to_nic_id("raw-renamed:0", &n));
  EXPECT(n == my_nic, "renamed board: %" PRIx64, n);
  CHECK(mx_raw_set_peer_name(raw, peer_nic, "raw-peer:0"));
  CHECK(mx_hostname_to_nic_id("raw-peer:0", &n));
  EXPECT(n == peer_nic, "named peer: %" PRIx64, n);
  CHECK(mx_nic_id_to_hostname(peer_nic, name));
  EXPECT(strcmp(name, "raw-peer:0") == 0, "peer name %s", name);
  char longname[120];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  EXPECT_RET(mx_raw_set_hostname(raw, NULL), MX_BAD_HOSTNAME_ARGS);
  EXPECT_RET(mx_raw_set_hostname(raw, ""), MX_BAD_HOSTNAME_ARGS);
  EXPECT_RET(mx_raw_set_hostname(raw, longname), MX_BAD_HOSTNAME_ARGS);
  EXPECT_RET(mx_raw_set_peer_name(raw, 0, "zero:0"), MX_BAD_HOSTNAME_ARGS);

  /* --- close --- */
  CHECK(mx_raw_close_endpoint(raw));
  EXPECT_RET(mx_raw_close_endpoint(raw), MX_BAD_ENDPOINT);
  EXPECT_RET(mx_raw_send(raw, 0, NULL, 0, f, 64, NULL), MX_BAD_ENDPOINT);
  len = sizeof buf;
  EXPECT_RET(mx_raw_next_event(raw, NULL, &ctx, buf, &len, 0, &st), MX_BAD_ENDPOINT);
  EXPECT(mx_raw_handle(raw) == MX__INVALID_HANDLE, "closed handle");
  /* closed means free: it opens again (and mx_finalize closes it) */
  CHECK(mx_raw_open_endpoint(0, NULL, 0, &raw));
  CHECK(mx_finalize());
  EXPECT_RET(mx_raw_open_endpoint(0, NULL, 0, &raw), MX_NOT_INITIALIZED);
  printf("raw-ping: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  mxt_watchdog(60);
  if (argc == 3 && strcmp(argv[1], "echo") == 0) {
    mx_set_error_handler(MX_ERRORS_RETURN);
    CHECK(mx_init());
    return echo(atoi(argv[2]));
  }
  if (argc == 3 && strcmp(argv[1], "ping") == 0)
    return ping(strtoull(argv[2], NULL, 16));
  fprintf(stderr, "usage: raw echo <count> | raw ping <peer nic id (hex)>\n");
  return 2;
}
