/* satellites.c — GET /api/v1/satellites: the satellites that link.rx
 * (nodes/link) knows in this graph's store, one record each (id, version,
 * hardware profile, cpus, memory, queue depth, connected, last seen, link
 * stats), as link.rx wrote them to the `satellites` family.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/store.h"
#include "nodes/core/core.h"

static int add_one(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	cJSON *a = arg;
	(void)key, (void)klen;
	cJSON *o = core_json_parse(val, vlen);
	if (o)
		cJSON_AddItemToArray(a, o);
	return 0;
}

void core_satellites_list(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	cJSON *o = cJSON_CreateObject();
	cJSON *a = o ? cJSON_AddArrayToObject(o, "satellites") : NULL;
	int rc = a ? tlcm_store_scan(r->c->store, "satellites", "", 0, add_one,
				     a)
		   : TLCM_ENOMEM;
	if (rc) {
		cJSON_Delete(o);
		core_error(r, 503, "unavailable", "satellites: %s",
			   tlcm_strerror(rc));
		return;
	}
	core_reply_cjson(r, 200, o);
}
