// OpenBLAS's CBLAS interface (libopenblas-dev), plus openblas_set_num_threads.
#include <cblas.h>

// LAPACK's symmetric positive-definite solver, which OpenBLAS exports; Debian
// ships no LAPACK header with libopenblas-dev, so its Fortran prototype is here.
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb, int *info);
