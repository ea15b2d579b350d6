#ifndef TERN_TEST_H
#define TERN_TEST_H
/*
 * A minimal unit-test harness: each test binary is one CTest test; a failed
 * check prints where and why and makes the binary exit non-zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond) do { test_checks++; if (!(cond)) { test_failures++; \
	fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); test_checks++; \
	if (_a != _b) { test_failures++; fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
	__FILE__, __LINE__, #a, _a, _b); } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); test_checks++; \
	if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) { test_failures++; \
	fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
	_a ? _a : "(null)", _b ? _b : "(null)"); } } while (0)
#define CHECK_MEM(a, alen, b, blen) do { test_checks++; if ((alen) != (blen) || \
	memcmp((a), (b), (alen)) != 0) { test_failures++; fprintf(stderr, \
	"%s:%d: %s differs (len %zu vs %zu)\n", __FILE__, __LINE__, #a, (size_t)(alen), \
	(size_t)(blen)); } } while (0)

#define TEST_MAIN_END() do { printf("%d checks, %d failed\n", test_checks, test_failures); \
	return test_failures == 0 ? 0 : 1; } while (0)

#endif
