/* idx.h — IDX files (the MNIST / Fashion-MNIST format), raw or gzip.
 *
 * An IDX file is a header — two zero bytes, an element type byte
 * (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32,
 * 0x0D float32, 0x0E float64), a dimension count byte, then each dimension
 * as a big-endian uint32 — followed by the elements, row-major. Dimension 0
 * counts the items (images, labels).
 *
 * tlcm_idx_file_load() reads the whole file through engine/io.h (io_uring) and,
 * when it starts with the gzip magic, inflates it in memory with zlib: the
 * header first, so the output buffer is allocated at exactly the size the
 * header declares, then the data. Every inconsistency is an error whose
 * message names the file and says what was expected: bad magic, unknown
 * type, zero or too many dimensions, data shorter (truncated) or longer
 * than the header declares, corrupt gzip data.
 */
#ifndef TLCM_CAPTURE_IDX_H
#define TLCM_CAPTURE_IDX_H

#include <stddef.h>
#include <stdint.h>

#define TLCM_IDX_MAX_DIMS 4
/* Limits: compressed file and decompressed data (1 GiB and 4 GiB). */
#define TLCM_IDX_MAX_FILE ((size_t)1 << 30)
#define TLCM_IDX_MAX_DATA ((uint64_t)4 << 30)

typedef struct tlcm_idx_file {
	uint8_t *data;        /* owned: the whole decompressed file */
	size_t len;
	uint8_t type;         /* element type byte (0x08 = unsigned byte) */
	unsigned ndims;
	uint32_t dims[TLCM_IDX_MAX_DIMS];
	size_t count;         /* dims[0]: items */
	size_t item_size;     /* bytes per item */
	const uint8_t *items; /* the first item, inside data */
} tlcm_idx_file_t;

/* Parse an IDX file held in memory (gzip or raw); out gets its own copy.
 * name is used in messages (the path). */
int tlcm_idx_file_parse(tlcm_idx_file_t *out, const void *file, size_t len,
		   const char *name, char *why, size_t cap);
/* Read path (through engine/io.h) and parse it. */
int tlcm_idx_file_load(tlcm_idx_file_t *out, const char *path, char *why,
		       size_t cap);
void tlcm_idx_file_free(tlcm_idx_file_t *x);

/* The item shape as text, e.g. "28x28" ("1" for scalar items). */
void tlcm_idx_file_dims(const tlcm_idx_file_t *x, char *buf, size_t cap);

/* Element size of an IDX type byte, 0 when unknown. */
size_t tlcm_idx_file_type_size(uint8_t type);

#endif
