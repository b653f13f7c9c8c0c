// Compile-time checks of the ABI header's layout on this platform. The header
// is the product; this file exists so the C target has a translation unit.
#include "router_plugin.h"

_Static_assert(sizeof(uint32_t) * 2 == offsetof(rp_plugin, name), "rp_plugin header layout");
_Static_assert(offsetof(rp_host, context) == 8, "rp_host header layout");
