// Floors check (tests/floors/CMakeLists.txt): the kernels floor cannot see the model. Must fail to
// compile with "model/gemma4/model.h" not found.
#include "model/gemma4/model.h"
