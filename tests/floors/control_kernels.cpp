// Floors control (tests/floors/CMakeLists.txt): the kernels floor sees its own headers and those of
// the floors below it (quant, core), so the checks that must fail cannot pass by a broken setup.
#include "core/error.h"
#include "kernels/matmul.h"
#include "quant/affine.h"
