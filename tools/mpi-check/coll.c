/* SPDX-License-Identifier: MIT OR Apache-2.0 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int c, char **v) { int r, n; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n);
  for (int round = 0; round < 20; round++) {
    int x = r + round, sum = 0; MPI_Allreduce(&x, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (sum != n * (n - 1) / 2 + n * round) { printf("allreduce bad %d\n", sum); MPI_Abort(MPI_COMM_WORLD, 1); }
    int cnt = 100000; double *d = malloc(cnt * sizeof *d); if (r == 0) for (int i = 0; i < cnt; i++) d[i] = i + round;
    MPI_Bcast(d, cnt, MPI_DOUBLE, 0, MPI_COMM_WORLD); for (int i = 0; i < cnt; i++) if (d[i] != i + round) { printf("bcast bad\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
    free(d);
    int *s = malloc(n * 1000 * sizeof(int)), *t = malloc(n * 1000 * sizeof(int));
    for (int p = 0; p < n; p++) for (int i = 0; i < 1000; i++) s[p * 1000 + i] = r * 100000 + p * 1000 + i;
    MPI_Alltoall(s, 1000, MPI_INT, t, 1000, MPI_INT, MPI_COMM_WORLD);
    for (int p = 0; p < n; p++) for (int i = 0; i < 1000; i++) if (t[p * 1000 + i] != p * 100000 + r * 1000 + i) { printf("alltoall bad\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
    free(s); free(t); MPI_Barrier(MPI_COMM_WORLD); }
  if (r == 0) printf("collectives ok (%d ranks, 20 rounds)\n", n); MPI_Finalize(); return 0; }
