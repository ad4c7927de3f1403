/* swap.h — putting a model file in place so that a crash at any moment
 * leaves either the old or the new file under the name, never a broken
 * one (nodes/updater/).
 *
 * Every change of a name is a rename(2) within one directory followed by
 * an fsync of that directory; new content is written and fsync'd under a
 * temporary name first. A copy that keeps a file (the previous model) is
 * a hard link when the file system has them — the updater never writes
 * into a model file in place, so sharing the inode is safe — else a real
 * copy, fsync'd before its rename.
 */
#ifndef TLCM_UPDATER_SWAP_H
#define TLCM_UPDATER_SWAP_H

#include <stddef.h>

/* fsync the directory holding path (its entries: names made or renamed).
 * 0, or TLCM_EIO with why. */
int upd_sync_dir_of(const char *path, char *why, size_t cap);

/* rename(from, to), then fsync their directory. */
int upd_rename(const char *from, const char *to, char *why, size_t cap);

/* Make dst an exact copy of src, atomically: link (or copy + fsync) src
 * to tmp, rename tmp to dst, fsync the directory. All three in one
 * directory. TLCM_ENOENT when src does not exist. */
int upd_copy_over(const char *src, const char *dst, const char *tmp,
		  char *why, size_t cap);

#endif
