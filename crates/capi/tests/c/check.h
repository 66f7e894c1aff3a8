/* Assertions for the C tests: each failure prints the line, the status and anetrain's message. */
#ifndef ANETRAIN_TEST_CHECK_H
#define ANETRAIN_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anetrain.h"

#define OK(call)                                                                       \
    do {                                                                               \
        anetrain_status s_ = (call);                                                   \
        if (s_ != ANETRAIN_OK) {                                                       \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call,  \
                    s_, anetrain_last_error());                                        \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* The call fails with `code` and leaves a message mentioning `needle`. */
#define FAILS(call, code, needle)                                                      \
    do {                                                                               \
        anetrain_status s_ = (call);                                                   \
        const char *m_ = anetrain_last_error();                                        \
        if (s_ != (code) || m_ == NULL || strstr(m_, (needle)) == NULL) {              \
            fprintf(stderr, "%s:%d: %s returned %d (want %d) with message \"%s\" "     \
                    "(want it to mention \"%s\")\n", __FILE__, __LINE__, #call, s_,    \
                    (code), m_ ? m_ : "(null)", (needle));                             \
            exit(1);                                                                   \
        }                                                                              \
        printf("error path ok: %s -> %d: %s\n", #call, s_, m_);                        \
    } while (0)

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);        \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* The number after `"key":` (optionally followed by a space) in a JSON text. */
static inline double json_number(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    EXPECT(at != NULL);
    return strtod(at + strlen(pattern), NULL);
}

#endif
