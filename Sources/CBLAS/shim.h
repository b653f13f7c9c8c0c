// OpenBLAS's CBLAS interface (libopenblas-dev), plus openblas_set_num_threads.
#include <cblas.h>
