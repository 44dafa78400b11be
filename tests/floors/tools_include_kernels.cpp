// Floors check (tests/floors/CMakeLists.txt): a tools source file cannot include a kernels header;
// the tools floor's guard header stops it with an #error.
#include "kernels/matmul.h"
