// Control for floors.server_cannot_include_engine: the server's own headers and the public API
// build with the server's include path.
#include "mlxq/session.h"
#include "server/server.h"
#include "server/slots.h"
