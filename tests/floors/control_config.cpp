// Floors control (tests/floors/CMakeLists.txt): the Gemma-4 config library sees its own header.
#include "model/gemma4/config.h"
