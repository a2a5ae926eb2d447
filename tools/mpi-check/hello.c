/* SPDX-License-Identifier: MIT OR Apache-2.0 */
#include <mpi.h>
#include <stdio.h>
int main(int c, char **v) { int r, n; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n);
  printf("hello %d/%d\n", r, n); MPI_Finalize(); return 0; }
