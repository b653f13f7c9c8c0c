// Compile-time checks of the ABI header's layout on this platform. The header
// is the product; this file exists so the C target has a translation unit.
#include "router_plugin.h"

_Static_assert(sizeof(uint32_t) * 2 == offsetof(rp_plugin, name), "rp_plugin header layout");
_Static_assert(offsetof(rp_host, context) == 8, "rp_host header layout");
// Revision 2 only appended: revision-1 plugins fill exactly the bytes before it.
_Static_assert(offsetof(rp_plugin, score_models) == offsetof(rp_plugin, free_string) + sizeof(void *), "rp_plugin revision 2 is appended");
_Static_assert(offsetof(rp_instance_info, candidates) == offsetof(rp_instance_info, embedding_dim) + sizeof(size_t), "rp_instance_info revision 2 is appended");
// Revision 4 only appended, after revision 3's `forget`.
_Static_assert(offsetof(rp_plugin, familiarity) == offsetof(rp_plugin, forget) + sizeof(void *), "rp_plugin revision 4 is appended");
