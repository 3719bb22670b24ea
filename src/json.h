/* json.h - a small, strict JSON parser (RFC 8259) and helpers to write JSON text.
 *
 * Made for safetensors headers, which come from untrusted files, so the parser is strict and
 * bounded:
 *  - the input is a byte buffer with an explicit length (no NUL terminator needed); it must be
 *    exactly one JSON value surrounded by optional whitespace, and valid UTF-8;
 *  - strings may not contain raw control characters; escapes (\" \\ \/ \b \f \n \r \t \uXXXX,
 *    with surrogate pairs) are decoded to UTF-8; lone surrogates are errors;
 *  - numbers without a fraction or exponent are integers and must fit in int64 (an overflow is an
 *    error); other numbers are doubles and must be finite;
 *  - objects with duplicate keys are errors;
 *  - nesting deeper than max_depth and documents with more than max_values values are errors,
 *    so neither the stack nor the memory used can be driven arbitrarily high by the input.
 * Errors name the byte offset: "invalid JSON at byte 12: expected ':' after object key".
 *
 * The parsed tree lives in one arena owned by an st_json_doc and is freed all at once.
 */
#ifndef STRIDE_JSON_H
#define STRIDE_JSON_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

typedef enum st_json_type {
    ST_JSON_NULL = 0,
    ST_JSON_FALSE,
    ST_JSON_TRUE,
    ST_JSON_INT,    /* integer literal that fits in int64: `integer` (and `number`) */
    ST_JSON_NUMBER, /* literal with a fraction or exponent: `number` */
    ST_JSON_STRING, /* `str`, `len` */
    ST_JSON_ARRAY,  /* `items`, `count` */
    ST_JSON_OBJECT  /* `items` (with `key`, `key_len`), `count` */
} st_json_type;

typedef struct st_json st_json;
struct st_json {
    st_json_type type;
    size_t offset;      /* byte offset of the value in the input */
    int64_t integer;    /* ST_JSON_INT */
    double number;      /* ST_JSON_INT (converted) and ST_JSON_NUMBER */
    const char *str;    /* ST_JSON_STRING: decoded UTF-8, NUL-terminated (may contain NULs) */
    size_t len;         /* ST_JSON_STRING: length of str in bytes */
    const char *key;    /* for a member of an object: its key (decoded, NUL-terminated) */
    size_t key_len;
    size_t key_offset;  /* for a member of an object: byte offset of its key */
    size_t count;       /* ST_JSON_ARRAY / ST_JSON_OBJECT: number of items */
    st_json **items;    /* ... in document order */
    st_json **sorted;   /* ST_JSON_OBJECT: the members sorted by key (for st_json_get) */
};

typedef struct st_json_doc st_json_doc;

#define ST_JSON_DEFAULT_MAX_DEPTH 64
/* About 100 bytes of memory per value: 1M values (~110,000 safetensors tensors, far more than any
 * real checkpoint holds) caps the memory a hostile header can make the parser use. */
#define ST_JSON_DEFAULT_MAX_VALUES ((size_t)1 << 20)

/* Parses len bytes of text. On success *doc holds the tree (free it with st_json_free) and
 * *root points to the top-level value; returns 0. On failure returns -1 and err says what is wrong
 * and at which byte. max_depth bounds the nesting of arrays and objects (1 = no containers inside
 * the top-level one), max_values the total number of values. */
int st_json_parse(const char *text, size_t len, int max_depth, size_t max_values, st_json_doc **doc,
                  const st_json **root, st_error *err);
void st_json_free(st_json_doc *doc);

/* The member of object obj whose key is key (a NUL-terminated string), or NULL (also when obj is
 * not an object). O(log n). */
const st_json *st_json_get(const st_json *obj, const char *key);
/* The name of a type, for messages: "null", "false", "true", "integer", "number", "string",
 * "array", "object". */
const char *st_json_type_name(st_json_type type);

/* 1 when s[0..len) is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF);
 * otherwise 0 and, if bad != NULL, *bad is the offset of the first invalid byte. */
int st_utf8_valid(const char *s, size_t len, size_t *bad);

/* ------------------------------------------------------------------ writing */

/* A growable string buffer. Appending never fails visibly: on out-of-memory the buffer sets
 * `failed` and ignores further appends, so callers check once at the end. data is always
 * NUL-terminated once anything has been appended. */
typedef struct st_strbuf {
    char *data;
    size_t len, cap;
    int failed;
} st_strbuf;

void st_strbuf_init(st_strbuf *sb);
void st_strbuf_free(st_strbuf *sb);
void st_strbuf_append(st_strbuf *sb, const void *bytes, size_t n);
void st_strbuf_puts(st_strbuf *sb, const char *s);
void st_strbuf_printf(st_strbuf *sb, const char *fmt, ...) ST_PRINTF(2, 3);
/* Appends s[0..len) as a JSON string literal with its quotes: '"' and '\' are escaped, control
 * characters become \n, \t, ... or \u00XX; other bytes (UTF-8) are copied as they are. */
void st_json_write_string(st_strbuf *sb, const char *s, size_t len);

#endif
