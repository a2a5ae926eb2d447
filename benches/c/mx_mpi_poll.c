/* An MX program that waits the way an MPI progress engine does: it never
 * blocks and never yields, it calls mx_test (or mx_ipeek, then mx_test) in
 * a tight loop until its requests are done. The comparison harness
 * (benches/src/cprog.rs) builds it with gcc against our myriexpress.h and
 * libmyriexpress.so and runs a receiver and a sender as two processes.
 *
 *   mx_mpi_poll recv EID POLL
 *       open endpoint EID, print "READY <nic_id hex>", serve one sender
 *   mx_mpi_poll send NIC_ID EID POLL TRANSPORT MODE
 *       connect to NIC_ID/EID, measure, print one JSON record per figure
 *
 * POLL: "test" (poll each request with mx_test) or "ipeek" (poll the
 * endpoint with mx_ipeek, complete what it hands out with mx_test).
 *
 * Protocol (both sides are this program): the sender sends a hello (its
 * NIC id and endpoint, match M_HELLO), the receiver connects back. Then
 * control messages [op, size, count] (match M_CTL) drive the receiver:
 * OP_PINGPONG echoes `count` messages of `size` (match M_DATA), OP_STREAM
 * takes `count` messages with a window of receives posted and answers
 * OP_ACK, OP_END ends. Per size: warm-up, then round trips timed one by
 * one (median and p99 of half the round trip), then one round trip whose
 * bytes are checked; streaming trials are timed from the first send to
 * the receiver's acknowledgement. $MXB_PLAN=quick shortens everything.
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <myriexpress.h>

#define KEY 0x4d58b0b0u
#define M_HELLO 0x30ull
#define M_CTL 0x20ull
#define M_DATA 0x10ull
#define OP_PINGPONG 1u
#define OP_STREAM 2u
#define OP_ACK 3u
#define OP_END 4u
#define MAX_SIZE (4u << 20)
#define MAX_WINDOW 64
#define MAX_SAMPLES 20000

static int use_ipeek;
static int quick;

#define CHECK(call)                                                                    \
  do {                                                                                 \
    mx_return_t r_ = (call);                                                           \
    if (r_ != MX_SUCCESS) {                                                            \
      fprintf(stderr, "mx_mpi_poll: %s:%d: %s -> %s\n", __FILE__, __LINE__, #call,     \
              mx_strerror(r_));                                                        \
      exit(2);                                                                         \
    }                                                                                  \
  } while (0)

static void die(const char *what) {
  fprintf(stderr, "mx_mpi_poll: %s\n", what);
  exit(3);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Spin until one request of reqs[0..n) is done (set to NULL) and return
 * its index, as an MPI progress loop built on MX does: no sleep, no yield.
 * reqs must hold every request this process has outstanding (mx_ipeek
 * hands out any finished one). A completion that is not a success ends
 * the program. */
static int poll_one(mx_endpoint_t ep, mx_request_t *reqs, int n) {
  uint64_t polls = 0;
  double t0 = 0;
  for (;;) {
    mx_status_t st;
    uint32_t done = 0;
    int i = 0;
    if (use_ipeek) {
      mx_request_t r = NULL;
      CHECK(mx_ipeek(ep, &r, &done));
      if (done) {
        while (i < n && (reqs[i] == NULL || reqs[i] != r)) i++;
        if (i == n) die("mx_ipeek handed out a request nobody posted");
        CHECK(mx_test(ep, &reqs[i], &st, &done));
        if (!done) die("mx_test: a request mx_ipeek handed out is not done");
      }
    } else {
      for (i = 0; i < n; i++) {
        if (reqs[i] != NULL) {
          CHECK(mx_test(ep, &reqs[i], &st, &done));
          if (done) break;
        }
      }
    }
    if (done) {
      if (st.code != MX_STATUS_SUCCESS) die(mx_strstatus(st.code));
      return i;
    }
    /* A deadline checked every 2^20 empty polls, so the loop itself makes
     * no system call of its own. */
    if ((++polls & 0xfffff) == 0) {
      if (t0 == 0) t0 = now();
      else if (now() - t0 > 60.0) die("no completion in 60 s");
    }
  }
}

/* poll_one until every request of reqs[0..n) is done. */
static void poll_all(mx_endpoint_t ep, mx_request_t *reqs, int n) {
  int left = 0;
  for (int i = 0; i < n; i++) left += reqs[i] != NULL;
  for (; left > 0; left--) poll_one(ep, reqs, n);
}

static void post_recv(mx_endpoint_t ep, void *buf, uint32_t len, uint64_t match,
                      mx_request_t *r) {
  mx_segment_t seg = {buf, len};
  CHECK(mx_irecv(ep, &seg, 1, match, MX_MATCH_MASK_NONE, NULL, r));
}

static void post_send(mx_endpoint_t ep, void *buf, uint32_t len, mx_endpoint_addr_t to,
                      uint64_t match, mx_request_t *r) {
  mx_segment_t seg = {buf, len};
  CHECK(mx_isend(ep, &seg, 1, to, match, NULL, r));
}

static void send_ctl(mx_endpoint_t ep, mx_endpoint_addr_t to, uint64_t op, uint64_t size,
                     uint64_t count) {
  uint64_t c[3] = {op, size, count};
  mx_request_t r;
  post_send(ep, c, sizeof c, to, M_CTL, &r);
  poll_all(ep, &r, 1);
}

static void recv_ctl(mx_endpoint_t ep, uint64_t c[3]) {
  mx_request_t r;
  post_recv(ep, c, 3 * sizeof(uint64_t), M_CTL, &r);
  poll_all(ep, &r, 1);
}

static uint8_t pattern(size_t i, uint8_t salt) { return (uint8_t)(i * 7u + salt); }

static int window_of(uint32_t size) {
  uint32_t w = (16u << 20) / (size ? size : 1);
  return w < 1 ? 1 : w > MAX_WINDOW ? MAX_WINDOW : (int)w;
}

static int receiver(uint32_t eid) {
  mx_endpoint_t ep;
  CHECK(mx_open_endpoint(MX_ANY_NIC, eid, KEY, NULL, 0, &ep));
  mx_endpoint_addr_t me;
  uint64_t nic;
  uint32_t my_eid;
  CHECK(mx_get_endpoint_addr(ep, &me));
  CHECK(mx_decompose_endpoint_addr(me, &nic, &my_eid));
  printf("READY %#" PRIx64 "\n", nic);
  fflush(stdout);

  uint64_t hello[2];
  mx_request_t r;
  post_recv(ep, hello, sizeof hello, M_HELLO, &r);
  poll_all(ep, &r, 1);
  mx_endpoint_addr_t back;
  CHECK(mx_connect(ep, hello[0], (uint32_t)hello[1], KEY, 10000, &back));

  uint8_t *bufs[MAX_WINDOW];
  for (int i = 0; i < MAX_WINDOW; i++) bufs[i] = NULL;
  bufs[0] = malloc(MAX_SIZE);
  if (!bufs[0]) die("out of memory");
  for (;;) {
    uint64_t c[3];
    recv_ctl(ep, c);
    uint32_t size = (uint32_t)c[1];
    uint64_t count = c[2];
    if (c[0] == OP_END) break;
    if (size > MAX_SIZE) die("size above 4 MiB");
    if (c[0] == OP_PINGPONG) {
      for (uint64_t k = 0; k < count; k++) {
        post_recv(ep, bufs[0], size, M_DATA, &r);
        poll_all(ep, &r, 1);
        post_send(ep, bufs[0], size, back, M_DATA, &r);
        poll_all(ep, &r, 1);
      }
    } else if (c[0] == OP_STREAM) {
      int w = window_of(size);
      for (int i = 1; i < w; i++) {
        if (!bufs[i] && !(bufs[i] = malloc(size ? size : 1))) die("out of memory");
      }
      mx_request_t rs[MAX_WINDOW];
      uint64_t posted = 0, got = 0;
      for (int i = 0; i < w; i++) rs[i] = NULL;
      while (got < count) {
        for (int i = 0; i < w && posted < count; i++) {
          if (rs[i] == NULL) {
            post_recv(ep, bufs[i], size, M_DATA, &rs[i]);
            posted++;
          }
        }
        poll_one(ep, rs, w);
        got++;
      }
      send_ctl(ep, back, OP_ACK, size, count);
      /* Streaming buffers are sized for this phase only. */
      for (int i = 1; i < MAX_WINDOW; i++) {
        free(bufs[i]);
        bufs[i] = NULL;
      }
    } else {
      die("unknown control message");
    }
  }
  for (int i = 0; i < MAX_WINDOW; i++) free(bufs[i]);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p) {
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return sorted[i < n ? i : n - 1];
}

static void record(const char *transport, const char *mode, uint32_t size, const char *metric,
                   double median, double p99, const char *unit, size_t n, const char *note) {
  printf("{\"transport\":\"%s\",\"mode\":\"%s\",\"size\":%u,\"metric\":\"%s\",\"median\":%.6g,"
         "\"p99\":%.6g,\"unit\":\"%s\",\"n\":%zu%s%s%s}\n",
         transport, mode, size, metric, median, p99, unit, n, note ? ",\"note\":\"" : "",
         note ? note : "", note ? "\"" : "");
  fflush(stdout);
}

/* One round trip of `size` bytes: post the pong's receive, send, spin on
 * both. */
static void round_trip(mx_endpoint_t ep, mx_endpoint_addr_t to, uint8_t *out, uint8_t *in,
                       uint32_t size) {
  mx_request_t r[2];
  post_recv(ep, in, size, M_DATA, &r[0]);
  post_send(ep, out, size, to, M_DATA, &r[1]);
  poll_all(ep, r, 2);
}

static void pingpong(mx_endpoint_t ep, mx_endpoint_addr_t to, uint8_t *out, uint8_t *in,
                     uint32_t size, const char *transport, const char *mode) {
  static double half[MAX_SAMPLES];
  int warm = quick ? 5 : size <= 4096 ? 300 : size <= 65536 ? 50 : 8;
  int lo = quick ? (size <= 65536 ? 5 : 2) : size <= 65536 ? 50 : 10;
  int hi = quick ? (size <= 65536 ? 50 : 3) : size <= 4096 ? MAX_SAMPLES : size <= 65536 ? 5000 : 150;
  double budget = quick ? 0.01 : 0.15;
  /* Warm-up, at most 100 ms of it, which also estimates a round trip. */
  send_ctl(ep, to, OP_PINGPONG, size, (uint64_t)warm);
  double t0 = now();
  for (int i = 0; i < warm; i++) round_trip(ep, to, out, in, size);
  double rtt = (now() - t0) / warm;
  int n = (int)(budget / (rtt > 1e-9 ? rtt : 1e-9));
  n = n < lo ? lo : n > hi ? hi : n;
  send_ctl(ep, to, OP_PINGPONG, size, (uint64_t)n + 1);
  for (int i = 0; i < n; i++) {
    double a = now();
    round_trip(ep, to, out, in, size);
    half[i] = (now() - a) * 1e6 / 2.0;
  }
  /* The last one carries a pattern that must come back intact. */
  for (uint32_t i = 0; i < size; i++) out[i] = pattern(i, (uint8_t)size);
  memset(in, 0, size);
  round_trip(ep, to, out, in, size);
  for (uint32_t i = 0; i < size; i++) {
    if (in[i] != pattern(i, (uint8_t)size)) die("a pong came back with other bytes");
  }
  qsort(half, (size_t)n, sizeof half[0], cmp_double);
  double med = pct(half, (size_t)n, 0.5), p99 = pct(half, (size_t)n, 0.99);
  record(transport, mode, size, "latency", med, p99, "us", (size_t)n, NULL);
  if (size > 0) {
    record(transport, mode, size, "pingpong_bw", size / med, size / p99, "MB/s", (size_t)n,
           NULL);
  }
}

static void stream(mx_endpoint_t ep, mx_endpoint_addr_t to, uint8_t *out, uint32_t size,
                   const char *transport, const char *mode) {
  int w = window_of(size);
  int trials = quick ? 1 : 3;
  double budget = quick ? 0.005 : 0.05;
  uint64_t most = quick ? 200 : 200000;
  double bw[4];
  uint64_t count = (uint64_t)w;
  /* trial 0 is the warm-up; it also sizes the timed trials. */
  for (int t = 0; t <= trials; t++) {
    send_ctl(ep, to, OP_STREAM, size, count);
    mx_request_t rs[MAX_WINDOW];
    for (int i = 0; i < w; i++) rs[i] = NULL;
    double a = now();
    for (uint64_t k = 0; k < count; k++) {
      int i = k < (uint64_t)w ? (int)k : poll_one(ep, rs, w);
      post_send(ep, out, size, to, M_DATA, &rs[i]);
    }
    poll_all(ep, rs, w);
    uint64_t c[3];
    recv_ctl(ep, c);
    if (c[0] != OP_ACK || c[2] != count) die("bad streaming acknowledgement");
    double secs = now() - a;
    if (t == 0) {
      uint64_t fit = (uint64_t)(budget / (secs / (double)count));
      count = fit < (uint64_t)w ? (uint64_t)w : fit > most ? most : fit;
    } else {
      bw[t - 1] = (double)count * size / secs / 1e6;
    }
  }
  qsort(bw, (size_t)trials, sizeof bw[0], cmp_double);
  char note[64];
  snprintf(note, sizeof note, "%d in flight, %" PRIu64 " per trial", w, count);
  record(transport, mode, size, "stream_bw", pct(bw, (size_t)trials, 0.5), bw[0], "MB/s",
         (size_t)trials, note);
}

static int sender(uint64_t nic, uint32_t eid, const char *transport, const char *mode) {
  mx_endpoint_t ep;
  CHECK(mx_open_endpoint(MX_ANY_NIC, MX_ANY_ENDPOINT, KEY, NULL, 0, &ep));
  mx_endpoint_addr_t dest, me;
  CHECK(mx_connect(ep, nic, eid, KEY, 10000, &dest));
  uint64_t hello[2];
  uint32_t my_eid;
  CHECK(mx_get_endpoint_addr(ep, &me));
  CHECK(mx_decompose_endpoint_addr(me, &hello[0], &my_eid));
  hello[1] = my_eid;
  mx_request_t r;
  post_send(ep, hello, sizeof hello, dest, M_HELLO, &r);
  poll_all(ep, &r, 1);

  uint8_t *out = malloc(MAX_SIZE), *in = malloc(MAX_SIZE);
  if (!out || !in) die("out of memory");
  memset(out, 0x5a, MAX_SIZE);
  static const uint32_t lat_sizes[] = {0, 8, 64, 4096, 65536, 1u << 20, 4u << 20};
  static const uint32_t bw_sizes[] = {65536, 1u << 20, 4u << 20};
  for (size_t i = 0; i < sizeof lat_sizes / sizeof lat_sizes[0]; i++)
    pingpong(ep, dest, out, in, lat_sizes[i], transport, mode);
  for (size_t i = 0; i < sizeof bw_sizes / sizeof bw_sizes[0]; i++)
    stream(ep, dest, out, bw_sizes[i], transport, mode);
  send_ctl(ep, dest, OP_END, 0, 0);
  free(out);
  free(in);
  CHECK(mx_close_endpoint(ep));
  CHECK(mx_finalize());
  return 0;
}

int main(int argc, char **argv) {
  const char *plan = getenv("MXB_PLAN");
  quick = plan && strcmp(plan, "quick") == 0;
  alarm(600);
  int recv = argc == 4 && strcmp(argv[1], "recv") == 0;
  int send = argc == 7 && strcmp(argv[1], "send") == 0;
  if (!recv && !send) {
    fprintf(stderr, "usage: mx_mpi_poll recv EID test|ipeek | "
                    "send NIC_ID EID test|ipeek TRANSPORT MODE\n");
    return 64;
  }
  const char *poll = recv ? argv[3] : argv[4];
  if (strcmp(poll, "ipeek") == 0) use_ipeek = 1;
  else if (strcmp(poll, "test") != 0) die("POLL must be test or ipeek");
  CHECK(mx_init());
  if (recv) return receiver((uint32_t)strtoul(argv[2], NULL, 0));
  return sender(strtoull(argv[2], NULL, 0), (uint32_t)strtoul(argv[3], NULL, 0), argv[5],
                argv[6]);
}
