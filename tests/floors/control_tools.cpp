// Floors control (tests/floors/CMakeLists.txt): the tools floor sees the engine, the converter and
// the model, whose headers include kernels headers through the tools' guard.
#include "convert/convert.h"
#include "engine/cpu_features.h"
#include "mlxq/session.h"
#include "model/gemma4/model.h"
