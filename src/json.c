/* json.c - a small, strict JSON parser and JSON writing helpers (see json.h).
 *
 * The parser is a recursive-descent parser whose recursion depth is bounded by max_depth. Nodes
 * and decoded strings are allocated from an arena owned by the document. While a container is
 * being parsed its children are pushed on one shared work stack; when the container closes they
 * are copied into an array in the arena and popped, so no per-container lists are needed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif

#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} arena_chunk;

struct st_json_doc {
    arena_chunk *chunks; /* the newest first */
};

#define ARENA_CHUNK_SIZE ((size_t)64 * 1024)

/* n bytes aligned for any type, zeroed; NULL when out of memory. */
static void *arena_alloc(st_json_doc *doc, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align - sizeof(arena_chunk))
        return NULL;
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK_SIZE ? n : ARENA_CHUNK_SIZE;
        c = malloc(sizeof(arena_chunk) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* Keep filling the current chunk when this one is only for a large block. */
        if (doc->chunks && cap > ARENA_CHUNK_SIZE) {
            c->next = doc->chunks->next;
            doc->chunks->next = c;
        } else {
            c->next = doc->chunks;
            doc->chunks = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void st_json_free(st_json_doc *doc)
{
    if (!doc)
        return;
    arena_chunk *c = doc->chunks;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if it is invalid
 * (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && s[1] >= 0x80 && s[1] <= 0xBF ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3)
            return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xBF ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4)
            return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && s[2] >= 0x80 && s[2] <= 0xBF && s[3] >= 0x80 &&
                       s[3] <= 0xBF
                   ? 4
                   : 0;
    }
    return 0;
}

int st_utf8_valid(const char *s, size_t len, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0) {
            if (bad)
                *bad = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* Writes code point cp (<= 0x10FFFF, not a surrogate) as UTF-8; returns the number of bytes. */
static size_t utf8_encode(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    const char *s;
    size_t len, pos;
    int max_depth;
    size_t max_values, nvalues;
    st_json_doc *doc;
    st_json **stack; /* children of the containers being parsed */
    size_t nstack, capstack;
    locale_t c_locale; /* for strtod_l, created on the first non-integer number */
    st_error *err;
} parser;

static int perr(parser *p, size_t offset, const char *fmt, ...) ST_PRINTF(3, 4);

static int perr(parser *p, size_t offset, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_seterr(p->err, "invalid JSON at byte %zu: %s", offset, msg);
}

/* "'x'" for a printable ASCII byte, "byte 0xNN" otherwise. */
static const char *describe_byte(unsigned char c, char buf[16])
{
    if (c >= 0x20 && c < 0x7F)
        snprintf(buf, 16, "'%c'", c);
    else
        snprintf(buf, 16, "byte 0x%02X", c);
    return buf;
}

static int unexpected(parser *p, const char *what)
{
    char b[16];
    if (p->pos >= p->len)
        return perr(p, p->pos, "unexpected end of input, expected %s", what);
    return perr(p, p->pos, "unexpected %s, expected %s", describe_byte((unsigned char)p->s[p->pos], b),
                what);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static void *palloc(parser *p, size_t n)
{
    void *ptr = arena_alloc(p->doc, n);
    if (!ptr)
        perr(p, p->pos, "out of memory");
    return ptr;
}

static st_json *new_node(parser *p, st_json_type type)
{
    if (p->nvalues >= p->max_values) {
        perr(p, p->pos, "more than %zu values", p->max_values);
        return NULL;
    }
    st_json *v = palloc(p, sizeof *v);
    if (!v)
        return NULL;
    p->nvalues++;
    v->type = type;
    v->offset = p->pos;
    return v;
}

static int push(parser *p, st_json *v)
{
    if (p->nstack == p->capstack) {
        size_t cap = p->capstack ? p->capstack * 2 : 64;
        st_json **s = realloc(p->stack, cap * sizeof *s);
        if (!s)
            return perr(p, p->pos, "out of memory");
        p->stack = s;
        p->capstack = cap;
    }
    p->stack[p->nstack++] = v;
    return 0;
}

/* Moves the children pushed since `base` into v->items. */
static int pop_children(parser *p, st_json *v, size_t base)
{
    v->count = p->nstack - base;
    if (v->count) {
        v->items = palloc(p, v->count * sizeof *v->items);
        if (!v->items)
            return -1;
        memcpy(v->items, p->stack + base, v->count * sizeof *v->items);
    }
    p->nstack = base;
    return 0;
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Parses the string literal at p->pos (which is '"') into a NUL-terminated arena copy. */
static int parse_string(parser *p, const char **out, size_t *outlen)
{
    const size_t start = p->pos;
    size_t end = start + 1;
    /* Find the closing quote first: the decoded string is never longer than the literal. */
    while (end < p->len && p->s[end] != '"')
        end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len)
        return perr(p, start, "unterminated string");
    char *buf = palloc(p, end - start);
    if (!buf)
        return -1;
    size_t k = 0;
    size_t j = start + 1;
    while (j < end) {
        unsigned char c = (unsigned char)p->s[j];
        if (c < 0x20)
            return perr(p, j, "control character 0x%02X in a string (must be escaped)", c);
        if (c >= 0x80) {
            size_t n = utf8_seq((const unsigned char *)p->s + j, end - j);
            if (n == 0)
                return perr(p, j, "invalid UTF-8 (byte 0x%02X) in a string", c);
            memcpy(buf + k, p->s + j, n);
            k += n;
            j += n;
            continue;
        }
        if (c != '\\') {
            buf[k++] = (char)c;
            j++;
            continue;
        }
        /* An escape; the prescan guarantees j + 1 < end. */
        char e = p->s[j + 1];
        switch (e) {
        case '"': buf[k++] = '"'; break;
        case '\\': buf[k++] = '\\'; break;
        case '/': buf[k++] = '/'; break;
        case 'b': buf[k++] = '\b'; break;
        case 'f': buf[k++] = '\f'; break;
        case 'n': buf[k++] = '\n'; break;
        case 'r': buf[k++] = '\r'; break;
        case 't': buf[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (end - j < 6 || hex4(p->s + j + 2, &cp) != 0)
                return perr(p, j, "invalid \\u escape (expected 4 hex digits)");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return perr(p, j, "unpaired surrogate \\u%04X in a string", (unsigned)cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (end - j < 12 || p->s[j + 6] != '\\' || p->s[j + 7] != 'u' ||
                    hex4(p->s + j + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return perr(p, j, "unpaired surrogate \\u%04X in a string", (unsigned)cp);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                j += 6;
            }
            k += utf8_encode(buf + k, cp);
            j += 4;
            break;
        }
        default: {
            char b[16];
            return perr(p, j, "invalid escape \\%s in a string",
                        describe_byte((unsigned char)e, b));
        }
        }
        j += 2;
    }
    buf[k] = '\0';
    *out = buf;
    *outlen = k;
    p->pos = end + 1;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static st_json *parse_number(parser *p)
{
    const size_t start = p->pos;
    int neg = 0;
    if (p->s[p->pos] == '-') {
        neg = 1;
        p->pos++;
    }
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) {
        perr(p, start, "invalid number (expected a digit)");
        return NULL;
    }
    const size_t digits = p->pos;
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && is_digit(p->s[p->pos])) {
            perr(p, start, "invalid number (leading zeros are not allowed)");
            return NULL;
        }
    } else {
        while (p->pos < p->len && is_digit(p->s[p->pos]))
            p->pos++;
    }
    const size_t int_end = p->pos;
    int is_int = 1;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) {
            perr(p, start, "invalid number (expected a digit after '.')");
            return NULL;
        }
        while (p->pos < p->len && is_digit(p->s[p->pos]))
            p->pos++;
        is_int = 0;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) {
            perr(p, start, "invalid number (expected a digit in the exponent)");
            return NULL;
        }
        while (p->pos < p->len && is_digit(p->s[p->pos]))
            p->pos++;
        is_int = 0;
    }

    size_t save = p->pos;
    p->pos = start;
    st_json *v = new_node(p, is_int ? ST_JSON_INT : ST_JSON_NUMBER);
    p->pos = save;
    if (!v)
        return NULL;

    if (is_int) {
        const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        uint64_t mag = 0;
        for (size_t i = digits; i < int_end; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (mag > (limit - d) / 10) {
                perr(p, start, "integer %.*s%s is out of the int64 range",
                     (int)(int_end - start > 40 ? 40 : int_end - start), p->s + start,
                     int_end - start > 40 ? "..." : "");
                return NULL;
            }
            mag = mag * 10 + d;
        }
        if (neg)
            v->integer = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        else
            v->integer = (int64_t)mag;
        v->number = (double)v->integer;
        return v;
    }

    if (p->c_locale == (locale_t)0) {
        p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (p->c_locale == (locale_t)0) {
            perr(p, start, "cannot create the C locale to read numbers");
            return NULL;
        }
    }
    size_t n = p->pos - start;
    char small[64];
    char *tmp = n < sizeof small ? small : malloc(n + 1);
    if (!tmp) {
        perr(p, start, "out of memory");
        return NULL;
    }
    memcpy(tmp, p->s + start, n);
    tmp[n] = '\0';
    v->number = strtod_l(tmp, NULL, p->c_locale);
    if (tmp != small)
        free(tmp);
    if (!isfinite(v->number)) {
        perr(p, start, "number %.*s%s is out of the double range", (int)(n > 40 ? 40 : n),
             p->s + start, n > 40 ? "..." : "");
        return NULL;
    }
    return v;
}

static st_json *parse_literal(parser *p, const char *word, st_json_type type)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        unexpected(p, "a JSON value");
        return NULL;
    }
    st_json *v = new_node(p, type);
    if (v)
        p->pos += n;
    return v;
}

static int cmp_members(const void *a, const void *b)
{
    const st_json *x = *(const st_json *const *)a, *y = *(const st_json *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->key_offset < y->key_offset ? -1 : x->key_offset > y->key_offset;
}

static st_json *parse_value(parser *p, int depth);

static st_json *parse_container(parser *p, int depth, int is_object)
{
    if (depth > p->max_depth) {
        perr(p, p->pos, "nesting deeper than %d levels", p->max_depth);
        return NULL;
    }
    st_json *v = new_node(p, is_object ? ST_JSON_OBJECT : ST_JSON_ARRAY);
    if (!v)
        return NULL;
    const char close = is_object ? '}' : ']';
    const size_t base = p->nstack;
    p->pos++; /* '{' or '[' */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return v;
    }
    for (;;) {
        st_json *item;
        if (is_object) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                unexpected(p, "a string key");
                return NULL;
            }
            const char *key;
            size_t key_len;
            const size_t key_offset = p->pos;
            if (parse_string(p, &key, &key_len) != 0)
                return NULL;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                unexpected(p, "':' after an object key");
                return NULL;
            }
            p->pos++;
            item = parse_value(p, depth);
            if (!item)
                return NULL;
            item->key = key;
            item->key_len = key_len;
            item->key_offset = key_offset;
        } else {
            item = parse_value(p, depth);
            if (!item)
                return NULL;
        }
        if (push(p, item) != 0)
            return NULL;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        unexpected(p, is_object ? "',' or '}' in an object" : "',' or ']' in an array");
        return NULL;
    }
    if (pop_children(p, v, base) != 0)
        return NULL;
    if (is_object) {
        v->sorted = palloc(p, v->count * sizeof *v->sorted);
        if (!v->sorted)
            return NULL;
        memcpy(v->sorted, v->items, v->count * sizeof *v->sorted);
        qsort(v->sorted, v->count, sizeof *v->sorted, cmp_members);
        for (size_t i = 1; i < v->count; i++) {
            const st_json *a = v->sorted[i - 1], *b = v->sorted[i];
            if (a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0) {
                /* b is the later one (ties are sorted by offset). The key is shown with control
                 * characters as '?' so that the message stays on one line (found by fuzzing). */
                char shown[61];
                size_t n = b->key_len > 60 ? 60 : b->key_len;
                for (size_t k = 0; k < n; k++) {
                    unsigned char ch = (unsigned char)b->key[k];
                    shown[k] = ch < 0x20 || ch == 0x7F ? '?' : (char)ch;
                }
                shown[n] = '\0';
                perr(p, b->key_offset, "duplicate key \"%s\"%s in an object", shown,
                     b->key_len > 60 ? "..." : "");
                return NULL;
            }
        }
    }
    return v;
}

static st_json *parse_value(parser *p, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len) {
        unexpected(p, "a JSON value");
        return NULL;
    }
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, depth + 1, 1);
    case '[': return parse_container(p, depth + 1, 0);
    case 't': return parse_literal(p, "true", ST_JSON_TRUE);
    case 'f': return parse_literal(p, "false", ST_JSON_FALSE);
    case 'n': return parse_literal(p, "null", ST_JSON_NULL);
    case '"': {
        st_json *v = new_node(p, ST_JSON_STRING);
        if (!v || parse_string(p, &v->str, &v->len) != 0)
            return NULL;
        return v;
    }
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p);
        unexpected(p, "a JSON value");
        return NULL;
    }
}

int st_json_parse(const char *text, size_t len, int max_depth, size_t max_values, st_json_doc **doc,
                  const st_json **root, st_error *err)
{
    *doc = NULL;
    *root = NULL;
    parser p = {0};
    p.s = text;
    p.len = len;
    p.max_depth = max_depth;
    p.max_values = max_values;
    p.err = err;
    p.doc = calloc(1, sizeof *p.doc);
    if (!p.doc)
        return st_seterr(err, "out of memory");
    st_json *v = parse_value(&p, 0);
    if (v) {
        skip_ws(&p);
        if (p.pos < p.len) {
            char b[16];
            perr(&p, p.pos, "unexpected %s after the JSON value",
                 describe_byte((unsigned char)p.s[p.pos], b));
            v = NULL;
        }
    }
    free(p.stack);
    if (p.c_locale != (locale_t)0)
        freelocale(p.c_locale);
    if (!v) {
        st_json_free(p.doc);
        return -1;
    }
    *doc = p.doc;
    *root = v;
    return 0;
}

const st_json *st_json_get(const st_json *obj, const char *key)
{
    if (!obj || obj->type != ST_JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    size_t lo = 0, hi = obj->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_json *m = obj->sorted[mid];
        size_t k = m->key_len < n ? m->key_len : n;
        int c = memcmp(m->key, key, k);
        if (c == 0 && m->key_len != n)
            c = m->key_len < n ? -1 : 1;
        if (c == 0)
            return m;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_json_type_name(st_json_type type)
{
    switch (type) {
    case ST_JSON_NULL: return "null";
    case ST_JSON_FALSE: return "false";
    case ST_JSON_TRUE: return "true";
    case ST_JSON_INT: return "integer";
    case ST_JSON_NUMBER: return "number";
    case ST_JSON_STRING: return "string";
    case ST_JSON_ARRAY: return "array";
    case ST_JSON_OBJECT: return "object";
    }
    return "?";
}

/* ------------------------------------------------------------------ writing */

void st_strbuf_init(st_strbuf *sb)
{
    sb->data = NULL;
    sb->len = sb->cap = 0;
    sb->failed = 0;
}

void st_strbuf_free(st_strbuf *sb)
{
    free(sb->data);
    st_strbuf_init(sb);
}

/* Makes room for n more bytes plus the NUL terminator. */
static int strbuf_reserve(st_strbuf *sb, size_t n)
{
    if (sb->failed)
        return -1;
    if (n > SIZE_MAX / 2 - sb->len) {
        sb->failed = 1;
        return -1;
    }
    if (sb->len + n + 1 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + n + 1)
        cap *= 2;
    char *d = realloc(sb->data, cap);
    if (!d) {
        sb->failed = 1;
        return -1;
    }
    sb->data = d;
    sb->cap = cap;
    return 0;
}

void st_strbuf_append(st_strbuf *sb, const void *bytes, size_t n)
{
    if (strbuf_reserve(sb, n) != 0)
        return;
    if (n)
        memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void st_strbuf_puts(st_strbuf *sb, const char *s)
{
    st_strbuf_append(sb, s, strlen(s));
}

void st_strbuf_printf(st_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = 1;
        return;
    }
    if (strbuf_reserve(sb, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void st_json_write_string(st_strbuf *sb, const char *s, size_t len)
{
    st_strbuf_append(sb, "\"", 1);
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *rep = NULL;
        switch (c) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04X", c);
                rep = esc;
            }
        }
        if (rep) {
            st_strbuf_append(sb, s + run, i - run);
            st_strbuf_puts(sb, rep);
            run = i + 1;
        }
    }
    st_strbuf_append(sb, s + run, len - run);
    st_strbuf_append(sb, "\"", 1);
}
