// Floors check (tests/floors/CMakeLists.txt): the Gemma-4 config library exposes config.h alone,
// not the rest of its folder (the model). Must fail to compile with "model/gemma4/model.h" not
// found.
#include "model/gemma4/model.h"
