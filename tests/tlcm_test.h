/* tlcm_test.h — the minimal test harness every C test uses.
 *
 * CHECK(cond) and the typed CHECK_* macros report file:line and the values
 * involved, count the failure and go on; tlcm_test_done() prints the tally
 * and gives main()'s exit status. A test that cannot run here calls
 * tlcm_test_skip(), which exits 77 (ctest's SKIP_RETURN_CODE) — except with
 * CI=true, where a skip is a failure: CI installs everything. Tests needing
 * hardware no CI machine has (see docs/testing.md) call tlcm_test_skip_hw().
 */
#ifndef TLCM_TEST_H
#define TLCM_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* atomic: CHECKs also run in the test nodes' worker threads */
static _Atomic int tlcm_test_checks, tlcm_test_failures;

#define TLCM__FAIL(...)                                                     \
	do {                                                                \
		tlcm_test_failures++;                                       \
		fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);       \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
	} while (0)

#define CHECK(cond)                                                         \
	do {                                                                \
		tlcm_test_checks++;                                         \
		if (!(cond))                                                \
			TLCM__FAIL("%s", #cond);                            \
	} while (0)

#define CHECK_INT(a, b)                                                     \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		tlcm_test_checks++;                                         \
		if (a_ != b_)                                               \
			TLCM__FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);\
	} while (0)

#define CHECK_UINT(a, b)                                                    \
	do {                                                                \
		unsigned long long a_ = (unsigned long long)(a),            \
				   b_ = (unsigned long long)(b);            \
		tlcm_test_checks++;                                         \
		if (a_ != b_)                                               \
			TLCM__FAIL("%s == %s: %llu != %llu", #a, #b, a_, b_);\
	} while (0)

/* exact comparison: values in tests are chosen to be representable */
#define CHECK_DBL(a, b)                                                     \
	do {                                                                \
		double a_ = (double)(a), b_ = (double)(b);                  \
		tlcm_test_checks++;                                         \
		if (!(a_ == b_ || (isnan(a_) && isnan(b_))))                \
			TLCM__FAIL("%s == %s: %.17g != %.17g", #a, #b, a_,  \
				   b_);                                     \
	} while (0)

#define CHECK_STR(a, b)                                                     \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		tlcm_test_checks++;                                         \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                      \
			TLCM__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b,    \
				   a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
	} while (0)

/* a_ contains b_ */
#define CHECK_CONTAINS(a, b)                                                \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		tlcm_test_checks++;                                         \
		if (!a_ || !b_ || !strstr(a_, b_))                          \
			TLCM__FAIL("\"%s\" does not contain \"%s\"",        \
				   a_ ? a_ : "(null)", b_);                 \
	} while (0)

static inline int tlcm_test_done(void)
{
	fprintf(stderr, "%d checks, %d failed\n", tlcm_test_checks,
		tlcm_test_failures);
	if (tlcm_test_checks == 0) {
		fprintf(stderr, "FAIL: the test checked nothing\n");
		return 1;
	}
	return tlcm_test_failures ? 1 : 0;
}

static inline void tlcm_test_skip(const char *why)
{
	const char *ci = getenv("CI");
	if (ci && strcmp(ci, "true") == 0) {
		fprintf(stderr, "FAIL: would skip (%s), but CI=true requires "
			"every test to run\n", why);
		exit(1);
	}
	fprintf(stderr, "SKIP: %s\n", why);
	exit(77);
}

/* For tests that need hardware no CI machine has (docs/testing.md). */
static inline void tlcm_test_skip_hw(const char *why)
{
	fprintf(stderr, "SKIP (hardware): %s\n", why);
	exit(77);
}

/* Read a whole file into an exactly-sized malloc buffer (so ASan sees any
 * read past its end). Exits the test on failure. */
static inline unsigned char *tlcm_test_read_file(const char *path,
						 size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "FAIL: cannot open %s\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
	if (!b || (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n)) {
		fprintf(stderr, "FAIL: cannot read %s\n", path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

#endif
