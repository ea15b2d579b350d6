/*
 * TEMPORARY: stand-ins for the store functions declared in store.h whose
 * backends are being written on another branch (aliases, quotas, usage,
 * health). Delete this file when that work is merged: the build then links
 * the real ones (and fails with duplicate symbols while this file exists).
 */
#include "store.h"

enum store_status store_alias_set(struct store *store, const char *address,
				  const char *const *targets, unsigned int target_count)
{
	return STORE_TEMPFAIL;
}

enum store_status store_alias_del(struct store *store, const char *address)
{
	return STORE_TEMPFAIL;
}

enum store_status store_alias_get(struct store *store, const char *address, struct buf *targets_r)
{
	return STORE_TEMPFAIL;
}

enum store_status store_alias_list(struct store *store, struct buf *out)
{
	return STORE_TEMPFAIL;
}

enum store_status store_resolve(struct store *store, const char *address,
				struct store_resolved *r)
{
	return STORE_TEMPFAIL;
}

enum store_status store_quota_get(struct store *store, const char *address,
				  struct store_quota *own_r)
{
	return STORE_TEMPFAIL;
}

enum store_status store_quota_set(struct store *store, const char *address,
				  const struct store_quota *own)
{
	return STORE_TEMPFAIL;
}

enum store_status store_quota_effective(struct store *store, const char *address,
					struct store_quota *limits_r)
{
	return STORE_TEMPFAIL;
}

enum store_status store_mailbox_usage(struct store *store, const char *address,
				      uint64_t *messages_r, uint64_t *octets_r)
{
	return STORE_TEMPFAIL;
}

enum store_status store_health(struct store *store, struct buf *detail)
{
	return STORE_OK;
}
