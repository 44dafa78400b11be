// Wrong way: the server is written against the public API (include/mlxq); the engine's own
// headers are not on its include path (docs/architecture.md, floors).
#include "engine/scheduler.h"
