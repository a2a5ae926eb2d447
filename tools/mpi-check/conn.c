/* SPDX-License-Identifier: MIT OR Apache-2.0 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
/* every pair exchanges a message both ways, eager and large */
int main(int c, char **v) { int r, n; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n);
  int sizes[] = {4, 70000, 1 << 20}; 
  for (int s = 0; s < 3; s++) { int len = sizes[s]; char *a = malloc(len), *b = malloc(len);
    for (int p = 0; p < n; p++) { if (p == r) continue;
      for (int i = 0; i < len; i++) a[i] = (char)(r * 31 + p + i);
      MPI_Sendrecv(a, len, MPI_CHAR, p, 7, b, len, MPI_CHAR, p, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      for (int i = 0; i < len; i++) if (b[i] != (char)(p * 31 + r + i)) { printf("conn: %d<-%d bad byte %d len %d\n", r, p, i, len); MPI_Abort(MPI_COMM_WORLD, 1); } }
    free(a); free(b); }
  MPI_Barrier(MPI_COMM_WORLD); if (r == 0) printf("connectivity ok (%d ranks)\n", n); MPI_Finalize(); return 0; }
