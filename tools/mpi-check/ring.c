/* SPDX-License-Identifier: MIT OR Apache-2.0 */
#include <mpi.h>
#include <stdio.h>
int main(int c, char **v) { int r, n, tok = 0; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n);
  for (int lap = 0; lap < 10; lap++) {
    if (r == 0) { tok = lap * 1000; MPI_Send(&tok, 1, MPI_INT, 1 % n, 0, MPI_COMM_WORLD); MPI_Recv(&tok, 1, MPI_INT, n - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (tok != lap * 1000 + n - 1) { printf("ring: bad token %d\n", tok); MPI_Abort(MPI_COMM_WORLD, 1); } }
    else { MPI_Recv(&tok, 1, MPI_INT, r - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE); tok++; MPI_Send(&tok, 1, MPI_INT, (r + 1) % n, 0, MPI_COMM_WORLD); } }
  if (r == 0) printf("ring ok (%d ranks, 10 laps)\n", n); MPI_Finalize(); return 0; }
