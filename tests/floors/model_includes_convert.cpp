// Floors check (tests/floors/CMakeLists.txt): the model cannot see the converter above it. Must
// fail to compile with "convert/convert.h" not found.
#include "convert/convert.h"
