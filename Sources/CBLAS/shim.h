// OpenBLAS's CBLAS interface (libopenblas-dev), plus openblas_set_num_threads.
#include <cblas.h>

// LAPACK's symmetric positive-definite solver, which OpenBLAS exports; Debian
// ships no LAPACK header with libopenblas-dev, so its Fortran prototype is here.
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb, int *info);

// LAPACK's Cholesky factorisation and triangular solve, for posterior draws N(mean, precision⁻¹).
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dtrtrs_(const char *uplo, const char *trans, const char *diag, const int *n, const int *nrhs, const double *a, const int *lda, double *b,
             const int *ldb, int *info);
