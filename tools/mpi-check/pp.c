/* SPDX-License-Identifier: MIT OR Apache-2.0 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* verified ping-pong 0 B .. 4 MiB between ranks 0 and 1, one-way latency printed */
int main(int c, char **v) { int r, n; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n);
  char *a = malloc(4 << 20), *b = malloc(4 << 20);
  for (int len = 0; len <= (4 << 20); len = len ? len * 4 : 1) {
    int iters = len < 65536 ? 200 : 20;
    for (int i = 0; i < len; i++) a[i] = (char)(i * 7 + len);
    double t0 = 0;
    for (int it = -5; it < iters; it++) { if (it == 0) t0 = MPI_Wtime();
      if (r == 0) { MPI_Send(a, len, MPI_CHAR, 1, 1, MPI_COMM_WORLD); memset(b, 0, len); MPI_Recv(b, len, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (memcmp(a, b, len)) { printf("pp: bad data at len %d\n", len); MPI_Abort(MPI_COMM_WORLD, 1); } }
      else if (r == 1) { MPI_Recv(b, len, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE); MPI_Send(b, len, MPI_CHAR, 0, 1, MPI_COMM_WORLD); } }
    if (r == 0) printf("pp %8d B  %10.2f us one-way\n", len, (MPI_Wtime() - t0) / iters / 2 * 1e6);
  }
  MPI_Finalize(); return 0; }
