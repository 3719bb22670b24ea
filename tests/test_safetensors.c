/* test_safetensors.c - the JSON parser, atomic file writing, the safetensors reader and writer
 * (round trips, a table of malformed files, every truncation and many mutations of a valid
 * file), and model save / load (bit-exact round trips of the three models, strict checking of
 * names, dtypes and shapes, and the error messages).
 *
 * Files are written into a fresh directory under /tmp (mkdtemp), removed at the end. */
#include "check.h"
#include "fileio.h"
#include "json.h"
#include "safetensors.h"
#include "stride.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];

/* ---------------------------------------------------------------- helpers */

/* tmpdir/name into a buffer of at least 512 bytes. */
static char *tmp_path(char *out, const char *name)
{
    snprintf(out, 512, "%s/%s", tmpdir, name);
    return out;
}

static int contains(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

/* Number of entries of dir whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int write_plain(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Whole file into a malloc'd buffer (NULL on error). */
static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *b = NULL;
    st_error err;
    if (st_read_file(path, &b, len, (size_t)1 << 30, &err) != 0)
        return NULL;
    return b;
}

/* A safetensors file with the given header (length prefix computed) and data_len data bytes
 * (a counting pattern). */
static uint8_t *make_file(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (uint8_t)i;
    return b;
}

/* Parses buf and checks that it fails with a message containing want. */
static void expect_parse_error(const uint8_t *buf, size_t len, const char *want, const char *label)
{
    st_safetensors sf;
    st_error err = {{0}};
    int rc = st_safetensors_parse(buf, len, &sf, &err);
    CHECKF(rc == -1, "%s: parsed, expected an error containing \"%s\"", label, want);
    if (rc == 0) {
        st_safetensors_free(&sf);
        return;
    }
    CHECKF(contains(err.msg, want), "%s: message \"%s\" lacks \"%s\"", label, err.msg, want);
    CHECKF(!strchr(err.msg, '\n'), "%s: message has a newline: \"%s\"", label, err.msg);
    CHECK(sf.ntensors == 0 && sf.tensors == NULL && sf.doc == NULL);
    st_safetensors_free(&sf); /* harmless on an empty result */
}

static void expect_header_error(const char *header, size_t data_len, const char *want)
{
    size_t len;
    uint8_t *b = make_file(header, data_len, &len);
    expect_parse_error(b, len, want, header);
    free(b);
}

/* ---------------------------------------------------------------- JSON */

static const st_json *parse_ok(st_json_doc **doc, const char *text)
{
    const st_json *root = NULL;
    st_error err = {{0}};
    int rc = st_json_parse(text, strlen(text), 64, 1000, doc, &root, &err);
    CHECKF(rc == 0, "parsing %s: %s", text, err.msg);
    return rc == 0 ? root : NULL;
}

static void expect_json_error(const char *text, size_t len, int max_depth, const char *want)
{
    st_json_doc *doc = (st_json_doc *)1;
    const st_json *root = (const st_json *)1;
    st_error err = {{0}};
    int rc = st_json_parse(text, len, max_depth, 1000, &doc, &root, &err);
    CHECKF(rc == -1, "\"%.*s\" parsed, expected \"%s\"", (int)len, text, want);
    if (rc == 0) {
        st_json_free(doc);
        return;
    }
    CHECK(doc == NULL && root == NULL);
    CHECKF(contains(err.msg, want), "\"%.*s\": message \"%s\" lacks \"%s\"", (int)len, text,
           err.msg, want);
}

static void test_json_values(void)
{
    st_json_doc *doc;
    const st_json *r = parse_ok(&doc,
                                " {\"a\": [1, -2, 9223372036854775807, -9223372036854775808, 0,"
                                " -0, 1.5, -2.5e3, 1E-2], \"s\": \"x\\\"\\\\\\/\\b\\f\\n\\r\\t\","
                                " \"u\": \"\\u00e9\\u20AC\\ud83d\\ude00\\u0000z\", \"raw\": \"é€😀\","
                                " \"t\": true, \"f\": false, \"n\": null, \"o\": {}, \"e\": []} ");
    if (!r)
        return;
    CHECK(r->type == ST_JSON_OBJECT && r->count == 9);
    CHECK(r->offset == 1);
    const st_json *a = st_json_get(r, "a");
    CHECK(a && a->type == ST_JSON_ARRAY && a->count == 9);
    if (a && a->count == 9) {
        CHECK(a->items[0]->type == ST_JSON_INT && a->items[0]->integer == 1);
        CHECK(a->items[1]->integer == -2);
        CHECK(a->items[2]->integer == INT64_MAX);
        CHECK(a->items[3]->integer == INT64_MIN);
        CHECK(a->items[4]->type == ST_JSON_INT && a->items[4]->integer == 0);
        CHECK(a->items[5]->type == ST_JSON_INT && a->items[5]->integer == 0);
        CHECK(a->items[6]->type == ST_JSON_NUMBER && a->items[6]->number == 1.5);
        CHECK(a->items[7]->number == -2500.0);
        CHECK(a->items[8]->type == ST_JSON_NUMBER && fabs(a->items[8]->number - 0.01) < 1e-15);
    }
    const st_json *s = st_json_get(r, "s");
    CHECK(s && s->type == ST_JSON_STRING && s->len == 9 && memcmp(s->str, "x\"\\/\b\f\n\r\t", 9) == 0);
    const st_json *u = st_json_get(r, "u");
    const char want_u[] = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0z";
    CHECK(u && u->len == sizeof want_u - 1 && memcmp(u->str, want_u, sizeof want_u) == 0);
    const st_json *raw = st_json_get(r, "raw");
    CHECK(raw && raw->len == 9 && memcmp(raw->str, want_u, 9) == 0);
    CHECK(st_json_get(r, "t")->type == ST_JSON_TRUE);
    CHECK(st_json_get(r, "f")->type == ST_JSON_FALSE);
    CHECK(st_json_get(r, "n")->type == ST_JSON_NULL);
    CHECK(st_json_get(r, "o")->type == ST_JSON_OBJECT && st_json_get(r, "o")->count == 0);
    CHECK(st_json_get(st_json_get(r, "o"), "x") == NULL);
    CHECK(st_json_get(r, "e")->type == ST_JSON_ARRAY && st_json_get(r, "e")->count == 0);
    CHECK(st_json_get(r, "missing") == NULL && st_json_get(a, "a") == NULL);
    /* Members keep document order. */
    CHECK(strcmp(r->items[0]->key, "a") == 0 && strcmp(r->items[8]->key, "e") == 0);
    st_json_free(doc);

    /* Lookups in a larger object (binary search over sorted keys). */
    char big[4096];
    size_t n = 0;
    n += (size_t)snprintf(big + n, sizeof big - n, "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", (i * 37) % 200,
                              (i * 37) % 200);
    snprintf(big + n, sizeof big - n, "}");
    r = parse_ok(&doc, big);
    if (r) {
        int all = 1;
        for (int i = 0; i < 200; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%d", i);
            const st_json *v = st_json_get(r, k);
            all &= v && v->integer == i;
        }
        CHECK(all);
        CHECK(st_json_get(r, "k200") == NULL && st_json_get(r, "k") == NULL);
        st_json_free(doc);
    }
    /* Strings larger than an arena chunk, between small values. */
    size_t blen = 200000;
    char *bigs = malloc(blen + 64);
    n = (size_t)sprintf(bigs, "[1,\"");
    memset(bigs + n, 'q', 150000);
    n += 150000;
    n += (size_t)sprintf(bigs + n, "\",\"small\",{\"k\":[true]}]");
    r = parse_ok(&doc, bigs);
    if (r) {
        CHECK(r->count == 4 && r->items[1]->len == 150000 && r->items[1]->str[149999] == 'q');
        CHECK(strcmp(r->items[2]->str, "small") == 0);
        CHECK(st_json_get(r->items[3], "k")->items[0]->type == ST_JSON_TRUE);
        CHECK(strcmp(st_json_type_name(r->items[3]->type), "object") == 0);
        st_json_free(doc);
    }
    free(bigs);
    /* A scalar at the top level. */
    r = parse_ok(&doc, " \"top\" ");
    CHECK(r && r->type == ST_JSON_STRING && strcmp(r->str, "top") == 0);
    st_json_free(doc);
}

static void test_json_errors(void)
{
#define E(text, want) expect_json_error(text, sizeof(text) - 1, 64, want)
    E("", "byte 0: unexpected end of input");
    E("   ", "byte 3: unexpected end of input");
    E("{", "byte 1: unexpected end of input, expected a string key");
    E("{\"a\" 1}", "byte 5: unexpected '1', expected ':'");
    E("{\"a\":1,}", "byte 7: unexpected '}', expected a string key");
    E("[1,]", "byte 3: unexpected ']', expected a JSON value");
    E("[1 2]", "byte 3: unexpected '2', expected ',' or ']'");
    E("{a:1}", "byte 1: unexpected 'a', expected a string key");
    E("{} x", "byte 3: unexpected 'x' after the JSON value");
    E("{}{}", "byte 2: unexpected '{' after the JSON value");
    E("tru", "byte 0: unexpected 't', expected a JSON value");
    E("nul1", "byte 0");
    E("01", "byte 0: invalid number (leading zeros");
    E("-", "invalid number (expected a digit)");
    E("1.", "expected a digit after '.'");
    E("1e+", "expected a digit in the exponent");
    E(".5", "unexpected '.'");
    E("+1", "unexpected '+'");
    E("9223372036854775808", "integer 9223372036854775808 is out of the int64 range");
    E("-9223372036854775809", "is out of the int64 range");
    E("[99999999999999999999999]", "byte 1: integer");
    E("1e999", "out of the double range");
    E("\"abc", "byte 0: unterminated string");
    E("\"abc\\\"", "unterminated string");
    E("\"a\tb\"", "byte 2: control character 0x09");
    E("\"\\x\"", "byte 1: invalid escape \\'x'");
    E("\"\\u12\"", "invalid \\u escape");
    E("\"\\u12G4\"", "invalid \\u escape");
    E("\"\\ud800\"", "unpaired surrogate \\uD800");
    E("\"\\ud800\\u0041\"", "unpaired surrogate");
    E("\"\\udc00\"", "unpaired surrogate \\uDC00");
    E("\"\xff\"", "byte 1: invalid UTF-8 (byte 0xFF)");
    E("\"\xc3\"", "invalid UTF-8");             /* truncated sequence */
    E("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
    E("\"\xed\xa0\x80\"", "invalid UTF-8");     /* encoded surrogate */
    E("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* above U+10FFFF */
    E("\xef\xbb\xbf{}", "byte 0: unexpected byte 0xEF");
    E("{\"a\":1,\"b\":2,\"a\":3}", "byte 13: duplicate key \"a\"");
    E("{\"a\\u0000\":1,\"a\\u0000\":2}", "duplicate key");
#undef E
    /* An embedded NUL outside strings is just a bad byte. */
    expect_json_error("[1,\0]", 5, 64, "byte 3: unexpected byte 0x00");
    /* Depth limit: 3 levels pass with max_depth 3, 4 do not. */
    st_json_doc *doc;
    const st_json *root;
    st_error err;
    CHECK(st_json_parse("[[[1]]]", 7, 3, 100, &doc, &root, &err) == 0);
    st_json_free(doc);
    expect_json_error("[[[[1]]]]", 9, 3, "byte 3: nesting deeper than 3 levels");
    /* Deep nesting far beyond the limit does not recurse. */
    static char deep[200001];
    memset(deep, '[', 200000);
    expect_json_error(deep, 200000, 64, "nesting deeper than 64 levels");
    /* The value limit. */
    CHECK(st_json_parse("[1,2,3]", 7, 8, 3, &doc, &root, &err) == -1);
    CHECK(contains(err.msg, "more than 3 values"));
    CHECK(st_json_parse("[1,2]", 5, 8, 3, &doc, &root, &err) == 0);
    st_json_free(doc);
}

static void test_json_write(void)
{
    char all[200];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        all[n++] = (char)c;
    memcpy(all + n, "\xC3\xA9\xF0\x9F\x98\x80", 6);
    n += 6;
    st_strbuf sb;
    st_strbuf_init(&sb);
    st_json_write_string(&sb, all, n);
    st_json_write_string(&sb, "", 0);
    st_strbuf_printf(&sb, "%d%s", 42, "!");
    CHECK(!sb.failed);
    CHECK(contains(sb.data, "\\u0001") && contains(sb.data, "\\n") && contains(sb.data, "\\\""));
    CHECK(contains(sb.data, "\"\"42!"));
    /* The first literal parses back to the same bytes. */
    size_t first = 0;
    for (size_t i = 1; i < sb.len; i++)
        if (sb.data[i] == '"' && sb.data[i - 1] != '\\') {
            first = i + 1;
            break;
        }
    st_json_doc *doc;
    const st_json *v;
    st_error err;
    CHECK(st_json_parse(sb.data, first, 4, 10, &doc, &v, &err) == 0);
    if (v) {
        CHECK(v->len == n && memcmp(v->str, all, n) == 0);
        st_json_free(doc);
    }
    st_strbuf_free(&sb);
    CHECK(sb.data == NULL && sb.len == 0);

    size_t bad;
    CHECK(st_utf8_valid("abc\xC3\xA9", 5, &bad));
    CHECK(!st_utf8_valid("ab\xC3", 3, &bad) && bad == 2);
    CHECK(!st_utf8_valid("a\x80", 2, &bad) && bad == 1);
}

/* ---------------------------------------------------------------- file I/O */

static void test_atomic_write(void)
{
    char path[512], missing[512], dirpath[512];
    st_error err = {{0}};
    tmp_path(path, "atomic.bin");
    const char *parts[] = {"hello ", NULL, "world"};
    const void *const chunks[] = {parts[0], parts[1], parts[2]};
    const size_t sizes[] = {6, 0, 5};
    CHECK(st_write_file_atomic(path, chunks, sizes, 3, &err) == 0);
    size_t len;
    uint8_t *b = slurp(path, &len);
    CHECK(b && len == 11 && memcmp(b, "hello world", 11) == 0);
    free(b);

    /* Replacing keeps the old file's permissions. */
    CHECK(chmod(path, 0640) == 0);
    const void *const c2[] = {"new"};
    const size_t s2[] = {3};
    CHECK(st_write_file_atomic(path, c2, s2, 1, &err) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
    b = slurp(path, &len);
    CHECK(b && len == 3 && memcmp(b, "new", 3) == 0);
    free(b);

    /* A path without a directory part is relative to the working directory. */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(tmpdir) == 0);
    CHECK(st_write_file_atomic("relative.bin", c2, s2, 1, &err) == 0);
    CHECK(chdir(cwd) == 0);
    tmp_path(dirpath, "relative.bin");
    b = slurp(dirpath, &len);
    CHECK(b && len == 3);
    free(b);

    /* A missing directory: an error naming the path and the reason. */
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.bin", tmpdir);
    CHECK(st_write_file_atomic(missing, c2, s2, 1, &err) == -1);
    CHECKF(contains(err.msg, missing) && contains(err.msg, strerror(ENOENT)), "%s", err.msg);

    /* A directory in the way: the rename fails, the directory stays, no temporary file. */
    tmp_path(dirpath, "adir");
    CHECK(mkdir(dirpath, 0755) == 0);
    CHECK(st_write_file_atomic(dirpath, c2, s2, 1, &err) == -1);
    CHECKF(contains(err.msg, "cannot rename") && contains(err.msg, dirpath), "%s", err.msg);
    CHECK(stat(dirpath, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(st_write_file_atomic("", c2, s2, 1, &err) == -1);
    CHECK(count_temp_files(tmpdir) == 0);

    /* A write that fails part-way (file size limit, like a full disk): the old file survives
     * intact and the temporary file is removed. Done in a child so the limit stays there. */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(2);
        static char big[100000];
        const void *const c3[] = {big};
        const size_t s3[] = {sizeof big};
        st_error e = {{0}};
        if (st_write_file_atomic(path, c3, s3, 1, &e) != -1)
            _exit(3);
        if (!contains(e.msg, "cannot write") || !contains(e.msg, strerror(EFBIG)))
            _exit(4);
        _exit(0);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    b = slurp(path, &len);
    CHECK(b && len == 3 && memcmp(b, "new", 3) == 0);
    free(b);
    CHECK(count_temp_files(tmpdir) == 0);
}

static void test_read_file(void)
{
    char path[512];
    st_error err = {{0}};
    uint8_t *b;
    size_t len;
    char data[100];
    memset(data, 'x', sizeof data);
    tmp_path(path, "hundred.bin");
    CHECK(write_plain(path, data, sizeof data) == 0);
    CHECK(st_read_file(path, &b, &len, 100, &err) == 0 && len == 100 && b[99] == 'x');
    free(b);
    CHECK(st_read_file(path, &b, &len, 99, &err) == -1 && b == NULL);
    CHECKF(contains(err.msg, path) && contains(err.msg, "100 bytes") &&
               contains(err.msg, "limit of 99 bytes"),
           "%s", err.msg);

    tmp_path(path, "empty.bin");
    CHECK(write_plain(path, "", 0) == 0);
    CHECK(st_read_file(path, &b, &len, 10, &err) == 0 && b != NULL && len == 0);
    free(b);

    tmp_path(path, "does-not-exist");
    CHECK(st_read_file(path, &b, &len, 10, &err) == -1);
    CHECKF(contains(err.msg, path) && contains(err.msg, strerror(ENOENT)), "%s", err.msg);
    CHECK(st_read_file(tmpdir, &b, &len, 10, &err) == -1);
    CHECKF(contains(err.msg, "directory"), "%s", err.msg);
    /* A non-regular file is read until its end, and limited too. */
    CHECK(st_read_file("/dev/zero", &b, &len, 100000, &err) == -1);
    CHECKF(contains(err.msg, "more than the limit of 100000 bytes"), "%s", err.msg);
}

/* ---------------------------------------------------------------- safetensors */

static void test_dtypes(void)
{
    st_sf_dtype dt;
    int all = 1;
    for (int i = 0; i < ST_SF_NUM_DTYPES; i++)
        all &= st_sf_dtype_parse(st_sf_dtype_name((st_sf_dtype)i), &dt) == 0 && (int)dt == i &&
               st_sf_dtype_size(dt) > 0;
    CHECK(all);
    CHECK(st_sf_dtype_parse("F33", &dt) == -1 && st_sf_dtype_parse("f32", &dt) == -1);
    CHECK(st_sf_dtype_size(ST_SF_F32) == 4 && st_sf_dtype_size(ST_SF_I64) == 8 &&
          st_sf_dtype_size(ST_SF_BF16) == 2 && st_sf_dtype_size(ST_SF_BOOL) == 1);
    CHECK(st_sf_dtype_from_st(ST_F32) == ST_SF_F32 && st_sf_dtype_from_st(ST_I64) == ST_SF_I64);
    char buf[32];
    int64_t sh[4] = {16, 1, 5, 5};
    st_sf_format_shape(buf, sizeof buf, sh, 4);
    CHECK(strcmp(buf, "[16,1,5,5]") == 0);
    st_sf_format_shape(buf, sizeof buf, sh, 0);
    CHECK(strcmp(buf, "[]") == 0);
    int64_t many[20];
    for (int i = 0; i < 20; i++)
        many[i] = 123456;
    st_sf_format_shape(buf, sizeof buf, many, 20);
    CHECKF(strlen(buf) < sizeof buf && contains(buf, "...]"), "%s", buf);
    CHECK(strcmp(st_sf_quote(buf, sizeof buf, "a\nb"), "'a?b'") == 0);
    st_sf_quote(buf, 12, "abcdefghijklmnop");
    CHECKF(strcmp(buf, "'abcde...'") == 0, "%s", buf);
    /* Truncation never splits a UTF-8 sequence. */
    st_sf_quote(buf, 12, "a\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9");
    CHECKF(strcmp(buf, "'a\xC3\xA9\xC3\xA9...'") == 0, "%s", buf);
    st_sf_quote(buf, 13, "ab\xE2\x82\xAC\xE2\x82\xAC");
    CHECKF(strcmp(buf, "'ab\xE2\x82\xAC...'") == 0, "%s", buf);
}

/* A set of tensors of several dtypes and shapes, including a scalar and an empty tensor. */
static float w_f32[2 * 3] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
static int64_t w_i64 = -1234567890123LL;
static float w_vec[5] = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f};
static uint16_t w_bf16[3] = {0x3F80, 0xBF80, 0x0000};
static const int64_t sh_23[2] = {2, 3}, sh_04[2] = {0, 4}, sh_5[1] = {5}, sh_3[1] = {3};

static const st_sf_tensor_w sample[] = {
    {"layer.weight", ST_SF_F32, 2, sh_23, w_f32},
    {"layer.num_batches_tracked", ST_SF_I64, 0, NULL, &w_i64},
    {"empty", ST_SF_F32, 2, sh_04, NULL},
    {"v\xC3\xA9\"quoted\"\\", ST_SF_F32, 1, sh_5, w_vec},
    {"bf", ST_SF_BF16, 1, sh_3, w_bf16},
};
static const char *const sample_meta[] = {"format", "pt", "note", "tab\there \xE2\x82\xAC"};
#define NSAMPLE ((int)(sizeof sample / sizeof sample[0]))

static void check_sample(const st_safetensors *sf)
{
    CHECK(st_safetensors_count(sf) == NSAMPLE);
    if (st_safetensors_count(sf) != NSAMPLE)
        return;
    for (int i = 0; i < NSAMPLE; i++) {
        const st_sf_tensor *t = st_safetensors_at(sf, i);
        const st_sf_tensor_w *w = &sample[i];
        CHECKF(strcmp(t->name, w->name) == 0, "tensor %d is %s", i, t->name);
        CHECK(st_safetensors_find(sf, w->name) == t);
        CHECK(t->dtype == w->dtype && t->ndim == w->ndim);
        size_t numel = 1;
        for (int d = 0; d < w->ndim; d++) {
            CHECK(t->shape[d] == w->shape[d]);
            numel *= (size_t)w->shape[d];
        }
        CHECK(t->numel == numel && t->nbytes == numel * st_sf_dtype_size(w->dtype));
        CHECK(t->end - t->begin == t->nbytes);
        CHECK(t->nbytes == 0 || memcmp(t->data, w->data, t->nbytes) == 0);
    }
    CHECK(st_safetensors_at(sf, -1) == NULL && st_safetensors_at(sf, NSAMPLE) == NULL);
    CHECK(st_safetensors_find(sf, "nope") == NULL && st_safetensors_find(sf, "") == NULL);
    CHECK(st_safetensors_meta_count(sf) == 2);
    CHECK(strcmp(st_safetensors_meta(sf, "format"), "pt") == 0);
    CHECK(strcmp(st_safetensors_meta(sf, "note"), sample_meta[3]) == 0);
    CHECK(st_safetensors_meta(sf, "nope") == NULL);
    const char *k, *v;
    st_safetensors_meta_at(sf, 1, &k, &v);
    CHECK(k && v && strcmp(k, "note") == 0 && strcmp(v, sample_meta[3]) == 0);
    st_safetensors_meta_at(sf, 2, &k, &v);
    CHECK(k == NULL && v == NULL);
}

static void test_roundtrip(void)
{
    st_error err = {{0}};
    uint8_t *buf;
    size_t len;
    CHECKF(st_safetensors_encode(sample, NSAMPLE, sample_meta, 2, &buf, &len, &err) == 0, "%s",
           err.msg);
    if (!buf)
        return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    CHECK(hlen % 8 == 0 && buf[8] == '{');
    CHECK(len == 8 + hlen + 24 + 8 + 0 + 20 + 6);
    /* The header is what the reference writer would produce, modulo key order. */
    CHECK(contains((const char *)buf + 8, "\"layer.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                                           "\"data_offsets\":[0,24]}"));
    CHECK(contains((const char *)buf + 8, "\"layer.num_batches_tracked\":{\"dtype\":\"I64\","
                                           "\"shape\":[],\"data_offsets\":[24,32]}"));
    st_safetensors sf;
    CHECKF(st_safetensors_parse(buf, len, &sf, &err) == 0, "%s", err.msg);
    check_sample(&sf);
    CHECK(sf.header_len == hlen);
    st_safetensors_free(&sf);

    /* Through a file: the same bytes, read back the same. */
    char path[512];
    tmp_path(path, "sample.safetensors");
    CHECKF(st_safetensors_write(path, sample, NSAMPLE, sample_meta, 2, &err) == 0, "%s", err.msg);
    size_t flen;
    uint8_t *fb = slurp(path, &flen);
    CHECK(fb && flen == len && memcmp(fb, buf, len) == 0);
    free(fb);
    CHECKF(st_safetensors_read(path, 1 << 20, &sf, &err) == 0, "%s", err.msg);
    check_sample(&sf);
    st_safetensors_free(&sf);
    CHECK(st_safetensors_read(path, 100, &sf, &err) == -1 && contains(err.msg, "limit of 100"));
    CHECK(count_temp_files(tmpdir) == 0);

    /* No tensors, no metadata: the smallest valid file. */
    free(buf);
    CHECK(st_safetensors_encode(NULL, 0, NULL, 0, &buf, &len, &err) == 0);
    CHECK(len == 16 && memcmp(buf + 8, "{}      ", 8) == 0);
    CHECK(st_safetensors_parse(buf, len, &sf, &err) == 0 && st_safetensors_count(&sf) == 0 &&
          st_safetensors_meta_count(&sf) == 0 && st_safetensors_meta(&sf, "format") == NULL &&
          st_safetensors_find(&sf, "x") == NULL);
    st_safetensors_free(&sf);
    free(buf);

    /* Files from other writers: keys in any order, whitespace, no padding, an unaligned data
     * section, zero-size tensors sharing an offset. */
    const char *hdr = "{ \"b\" : {\"shape\":[1],\"data_offsets\":[4,8],\"dtype\":\"F32\"},\n"
                      "\"z1\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                      "\"z0\":{\"dtype\":\"U8\",\"shape\":[2,0],\"data_offsets\":[4,4]},"
                      "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"__metadata__\":{}}";
    buf = make_file(hdr, 8, &len);
    CHECKF(st_safetensors_parse(buf, len, &sf, &err) == 0, "%s", err.msg);
    if (st_safetensors_count(&sf) == 4) {
        /* In data order; ties by name. */
        CHECK(strcmp(st_safetensors_at(&sf, 0)->name, "a") == 0);
        CHECK(strcmp(st_safetensors_at(&sf, 1)->name, "z0") == 0);
        CHECK(strcmp(st_safetensors_at(&sf, 2)->name, "z1") == 0);
        CHECK(strcmp(st_safetensors_at(&sf, 3)->name, "b") == 0);
        CHECK(st_safetensors_at(&sf, 3)->data == buf + 8 + strlen(hdr) + 4);
        CHECK(st_safetensors_at(&sf, 0)->dtype == ST_SF_I32);
    }
    st_safetensors_free(&sf);
    free(buf);
}

static void test_writer_errors(void)
{
    st_error err = {{0}};
    uint8_t *buf;
    size_t len;
    const int64_t neg[1] = {-1};
    float x[4] = {0};
    const st_sf_tensor_w dup[] = {{"a", ST_SF_F32, 1, sh_5, w_vec}, {"a", ST_SF_F32, 0, NULL, x}};
    CHECK(st_safetensors_encode(dup, 2, NULL, 0, &buf, &len, &err) == -1 && buf == NULL);
    CHECKF(contains(err.msg, "'a' is used twice"), "%s", err.msg);
    const st_sf_tensor_w reserved[] = {{"__metadata__", ST_SF_F32, 0, NULL, x}};
    CHECK(st_safetensors_encode(reserved, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "reserved"), "%s", err.msg);
    const st_sf_tensor_w badutf[] = {{"a\xff", ST_SF_F32, 0, NULL, x}};
    CHECK(st_safetensors_encode(badutf, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "not valid UTF-8"), "%s", err.msg);
    const st_sf_tensor_w negshape[] = {{"n", ST_SF_F32, 1, neg, x}};
    CHECK(st_safetensors_encode(negshape, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "'n' has a negative size -1"), "%s", err.msg);
    const st_sf_tensor_w nodata[] = {{"d", ST_SF_F32, 1, sh_5, NULL}};
    CHECK(st_safetensors_encode(nodata, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "'d' has no data"), "%s", err.msg);
    const st_sf_tensor_w baddt[] = {{"d", (st_sf_dtype)99, 1, sh_5, x}};
    CHECK(st_safetensors_encode(baddt, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "invalid dtype 99"), "%s", err.msg);
    const st_sf_tensor_w noname[] = {{NULL, ST_SF_F32, 0, NULL, x}};
    CHECK(st_safetensors_encode(noname, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "tensor 0 has no name"), "%s", err.msg);
    const int64_t huge2[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    const st_sf_tensor_w toolarge[] = {{"h", ST_SF_F32, 2, huge2, x}};
    CHECK(st_safetensors_encode(toolarge, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "'h' is too large"), "%s", err.msg);
    const st_sf_tensor_w manydims[] = {{"m", ST_SF_F32, 65, sh_5, x}};
    CHECK(st_safetensors_encode(manydims, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "'m' has 65 dimensions, expected 0 to 64"), "%s", err.msg);
    const st_sf_tensor_w noshape[] = {{"s", ST_SF_F32, 2, NULL, x}};
    CHECK(st_safetensors_encode(noshape, 1, NULL, 0, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "'s' has no shape"), "%s", err.msg);
    CHECK(st_safetensors_encode(NULL, -1, NULL, 0, &buf, &len, &err) == -1);
    const char *const dupmeta[] = {"k", "1", "k", "2"};
    CHECK(st_safetensors_encode(NULL, 0, dupmeta, 2, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "metadata key 'k' is used twice"), "%s", err.msg);
    const char *const nullmeta[] = {"k", NULL};
    CHECK(st_safetensors_encode(NULL, 0, nullmeta, 1, &buf, &len, &err) == -1);
    CHECKF(contains(err.msg, "NULL"), "%s", err.msg);
    /* A failed write names the file and leaves nothing behind. */
    char path[512];
    tmp_path(path, "bad.safetensors");
    CHECK(st_safetensors_write(path, dup, 2, NULL, 0, &err) == -1);
    CHECKF(contains(err.msg, path) && contains(err.msg, "used twice"), "%s", err.msg);
    struct stat st;
    CHECK(stat(path, &st) == -1 && count_temp_files(tmpdir) == 0);
}

static void test_malformed(void)
{
    /* The length prefix. */
    const uint8_t short5[5] = {2, 0, 0, 0, 0};
    expect_parse_error(short5, 5, "file is 5 bytes, too short", "5-byte file");
    expect_parse_error(short5, 0, "file is 0 bytes", "empty file");
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    expect_parse_error(huge, 16, "header length 18446744073709551615 is more than the limit of "
                                 "100000000 bytes", "huge header length");
    uint8_t big[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100,000,001 */
    expect_parse_error(big, 16, "more than the limit", "header length just over the limit");
    uint8_t longer[16] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    expect_parse_error(longer, 16, "header length 9 is more than the 8 bytes after it",
                       "header longer than the file");
    uint8_t zero[8] = {0};
    expect_parse_error(zero, 8, "does not start with '{'", "zero header length");

    /* The header. */
    expect_header_error("[1,2]", 0, "does not start with '{'");
    expect_header_error(" {}", 0, "does not start with '{'");
    expect_header_error("{abc}", 0, "header: invalid JSON at byte 1");
    expect_header_error("{\"a\":1", 0, "header: invalid JSON at byte 6: unexpected end of input");
    expect_header_error("{} {}", 0, "after the JSON value");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0,
                        "beyond the end of the data section (0 bytes)");
    expect_header_error("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no dtype");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no shape");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' has no data_offsets");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                        "tensor 'a': shape[0] is -1, expected a non-negative integer");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                        "shape[0] is a non-integer number, expected an integer");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                        "shape[0] is a string");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
                        "tensor 'a': shape is an integer, expected an array");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                        "\"data_offsets\":[0,4]}}", 4, "too many elements");
    expect_header_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                        "\"data_offsets\":[0,4]}}", 4, "too many bytes");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                        "\"data_offsets\":[0,4]}}", 4, "out of the int64 range");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                        "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                        "1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                        "has 65 dimensions, more than the limit of 64");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4,
                        "tensor 'a' has data_offsets [4,8] beyond the end of the data section (4 bytes)");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
                        "data_offsets[1] is -4");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                        "end before they begin");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                        "data_offsets must be an array [begin, end]");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                        "data_offsets must be an array");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                        "tensor 'a' has data_offsets [0,20] (20 bytes) but shape [2,3] of F32 "
                        "needs 24 bytes");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                        "tensors 'a' [0,8] and 'b' [4,12] overlap");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                        "overlap");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
                        "bytes 4 to 8 of the data section belong to no tensor (gap before tensor 'b')");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                        "the data section has 8 bytes but the tensors use 4 (trailing bytes)");
    expect_header_error("{}", 1, "trailing bytes");
    expect_header_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                        "tensor 'a' has an unknown dtype 'F33'");
    expect_header_error("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                        "unknown dtype 'f32'");
    expect_header_error("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                        "dtype is an integer, expected a string");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                        "tensor 'a' has an unknown key 'x'");
    expect_header_error("{\"a\":[1]}", 0, "tensor 'a': entry is an array, expected an object");
    expect_header_error("{\"a\":null}", 0, "entry is null");
    expect_header_error("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                        0, "contains a NUL byte");
    expect_header_error("{\"a\\nb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0,
                        "'a?b'");
    expect_header_error("{\"\xff\":{}}", 0, "header: invalid JSON at byte 2: invalid UTF-8");
    expect_header_error("{\"a\":{\"dtype\":\"F32\\udc00\"}}", 0, "unpaired surrogate");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
                        "\"data_offsets\":[0,4]}}", 4, "duplicate key \"dtype\"");
    expect_header_error("{\"a\":{},\"a\":{}}", 0, "duplicate key \"a\"");
    expect_header_error("{\"__metadata__\":[]}", 0, "__metadata__ is an array, expected an object");
    expect_header_error("{\"__metadata__\":{\"k\":1}}", 0,
                        "__metadata__ value of 'k' is an integer, expected a string");
    expect_header_error("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "contains a NUL byte");
    expect_header_error("{\"__metadata__\":{\"k\\u0000\":\"a\"}}", 0, "contains a NUL byte");

    /* Deep nesting, and the tensor count at the value limit. */
    char deep[400];
    memset(deep, '[', sizeof deep);
    memcpy(deep, "{\"a\":", 5);
    deep[sizeof deep - 1] = '\0';
    expect_header_error(deep, 0, "nesting deeper than 64 levels");

    /* A very long name is shortened in messages. */
    char longname[600];
    char lname[300];
    memset(lname, 'n', sizeof lname - 1);
    lname[sizeof lname - 1] = '\0';
    snprintf(longname, sizeof longname, "{\"%s\":{\"dtype\":\"F33\"}}", lname);
    expect_header_error(longname, 0, "nnn...'");
}

/* Every proper prefix of a valid file, and files with each byte changed, are handled without
 * crashing; the prefixes all fail. */
static void test_truncations_and_mutations(void)
{
    st_error err;
    uint8_t *buf;
    size_t len;
    CHECK(st_safetensors_encode(sample, NSAMPLE, sample_meta, 2, &buf, &len, &err) == 0);
    if (!buf)
        return;
    int failures = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees over-reads */
        memcpy(copy, buf, n);
        st_safetensors sf;
        if (st_safetensors_parse(copy, n, &sf, &err) == 0) {
            failures++;
            st_safetensors_free(&sf);
        }
        free(copy);
    }
    CHECKF(failures == 0, "%d truncated files parsed", failures);
    static const uint8_t values[] = {0x00, 0x01, 0x20, 0x22, 0x2C, 0x30, 0x39, 0x5B, 0x5C, 0x5D,
                                     0x7B, 0x7D, 0x7F, 0x80, 0xC3, 0xFF};
    int parsed = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t v = 0; v < sizeof values; v++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, buf, len);
            copy[i] = values[v];
            st_safetensors sf;
            if (st_safetensors_parse(copy, len, &sf, &err) == 0) {
                parsed++;
                /* Whatever parsed is self-consistent. */
                for (int k = 0; k < st_safetensors_count(&sf); k++) {
                    const st_sf_tensor *t = st_safetensors_at(&sf, k);
                    CHECK(t->data + t->nbytes <= copy + len);
                    CHECK(st_safetensors_find(&sf, t->name) == t);
                }
                st_safetensors_free(&sf);
            }
            free(copy);
        }
    }
    CHECK(parsed > 0); /* changes to the data section still parse */
    free(buf);
}

static void test_read_errors_name_the_file(void)
{
    char path[512];
    st_error err = {{0}};
    st_safetensors sf;
    tmp_path(path, "garbage.safetensors");
    CHECK(write_plain(path, "not a safetensors file at all", 29) == 0);
    CHECK(st_safetensors_read(path, 1 << 20, &sf, &err) == -1);
    CHECKF(strncmp(err.msg, path, strlen(path)) == 0 && contains(err.msg, "header length"), "%s",
           err.msg);
    CHECK(sf.ntensors == 0 && sf.owned == NULL);
    tmp_path(path, "missing.safetensors");
    CHECK(st_safetensors_read(path, 1 << 20, &sf, &err) == -1);
    CHECKF(contains(err.msg, path) && contains(err.msg, strerror(ENOENT)), "%s", err.msg);
}

/* ---------------------------------------------------------------- models */

static int tensors_equal(const st_model *a, const st_model *b)
{
    if (st_model_num_tensors(a) != st_model_num_tensors(b))
        return 0;
    for (int i = 0; i < st_model_num_tensors(a); i++) {
        const st_tensor *x = st_model_tensor(a, i), *y = st_model_tensor(b, i);
        size_t es = x->dtype == ST_I64 ? 8 : 4;
        if (strcmp(x->name, y->name) != 0 || x->numel != y->numel ||
            memcmp(x->data, y->data, x->numel * es) != 0)
            return 0;
    }
    return 1;
}

/* Fills every tensor with values that differ from any initialisation, including NaN, -0 and
 * denormals, so a bit-exact round trip is visible. */
static void scramble(st_model *m, uint32_t salt)
{
    for (int i = 0; i < st_model_num_tensors(m); i++) {
        const st_tensor *t = st_model_tensor(m, i);
        if (t->dtype == ST_I64) {
            ((int64_t *)t->data)[0] = 1000 + i + (int64_t)salt;
            continue;
        }
        uint32_t *u = t->data;
        for (size_t k = 0; k < t->numel; k++)
            u[k] = (uint32_t)(k * 2654435761u) ^ salt ^ (uint32_t)i;
    }
}

static void test_model_roundtrip(void)
{
    char path[512];
    st_error err = {{0}};
    tmp_path(path, "model.safetensors");
    for (int kind = 0; kind < 3; kind++) {
        st_model *a = st_model_create((st_model_kind)kind, 4, 7, &err);
        CHECKF(a, "%s", err.msg);
        if (!a)
            continue;
        scramble(a, 0x5A5A0000u + (uint32_t)kind);
        CHECKF(st_model_save(a, path, &err) == 0, "%s", err.msg);
        CHECK(count_temp_files(tmpdir) == 0);

        st_safetensors sf;
        CHECK(st_safetensors_read(path, 1 << 30, &sf, &err) == 0);
        CHECK(st_safetensors_count(&sf) == st_model_num_tensors(a));
        CHECK(strcmp(st_safetensors_meta(&sf, "format"), "pt") == 0);
        CHECK(strcmp(st_safetensors_meta(&sf, "stride_model"),
                     st_model_kind_name((st_model_kind)kind)) == 0);
        CHECK(strcmp(st_safetensors_meta(&sf, "stride_version"), STRIDE_VERSION) == 0);
        /* Stored in state_dict order. */
        int order = 1;
        for (int i = 0; i < st_safetensors_count(&sf) && i < st_model_num_tensors(a); i++)
            order &= strcmp(st_safetensors_at(&sf, i)->name, st_model_tensor(a, i)->name) == 0;
        CHECK(order);
        st_safetensors_free(&sf);

        st_model *b = st_model_load(path, 2, &err);
        CHECKF(b, "%s", err.msg);
        if (b) {
            CHECK(st_model_get_kind(b) == (st_model_kind)kind && st_model_max_batch(b) == 2);
            CHECK(tensors_equal(a, b));
            st_model_free(b);
        }
        st_model *c = st_model_create((st_model_kind)kind, 1, 99, &err);
        CHECK(c && !tensors_equal(a, c));
        CHECKF(c && st_model_load_into(c, path, &err) == 0, "%s", err.msg);
        CHECK(c && tensors_equal(a, c));
        st_model_free(c);
        st_model_free(a);
    }
}

/* Writes m's tensors to path with one of them changed by `change` (a tensor index; -1 none). */
typedef enum { CH_NONE, CH_SHAPE, CH_DTYPE, CH_DROP, CH_EXTRA, CH_RENAME } change_kind;

static int write_variant(const st_model *m, const char *path, int index, change_kind ch,
                         const char *const *meta, int nmeta, st_error *err)
{
    int n = st_model_num_tensors(m);
    st_sf_tensor_w *w = calloc((size_t)n + 1, sizeof *w);
    static double zeros[8192];
    static const int64_t bad_shape[4] = {16, 1, 3, 3};
    int k = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        st_sf_tensor_w x = {t->name, st_sf_dtype_from_st(t->dtype), t->ndim, t->shape, t->data};
        if (i == index) {
            if (ch == CH_DROP)
                continue;
            if (ch == CH_SHAPE) {
                x.ndim = 4;
                x.shape = bad_shape;
            }
            if (ch == CH_DTYPE) {
                x.dtype = ST_SF_F64;
                x.data = zeros;
            }
            if (ch == CH_RENAME)
                x.name = "block9.weight";
        }
        w[k++] = x;
    }
    if (ch == CH_EXTRA)
        w[k++] = (st_sf_tensor_w){"extra.weight", ST_SF_F32, 1, bad_shape, zeros};
    int rc = st_safetensors_write(path, w, k, meta, nmeta, err);
    free(w);
    return rc;
}

static void expect_load_error(const char *path, st_model *m, const char *want)
{
    st_error err = {{0}};
    st_model *x = st_model_load(path, 1, &err);
    CHECKF(x == NULL, "%s loaded, expected \"%s\"", path, want);
    st_model_free(x);
    CHECKF(contains(err.msg, path) && contains(err.msg, want), "message \"%s\" lacks \"%s\"",
           err.msg, want);
    /* load_into fails the same way and leaves the model as it was. */
    st_model *copy = st_model_create(st_model_get_kind(m), 1, 0, &err);
    scramble(copy, 77);
    scramble(m, 77);
    CHECK(st_model_load_into(m, path, &err) == -1);
    CHECKF(contains(err.msg, want), "load_into: message \"%s\" lacks \"%s\"", err.msg, want);
    CHECK(tensors_equal(m, copy));
    st_model_free(copy);
}

static void test_model_load_errors(void)
{
    char path[512];
    st_error err = {{0}};
    tmp_path(path, "bad_model.safetensors");
    st_model *m = st_model_create(ST_MODEL_CNN, 1, 0, &err);
    CHECKF(m, "%s", err.msg);
    if (!m)
        return;
    const char *const meta[] = {"format", "pt", "stride_model", "cnn"};
    int w0 = -1, nbt = -1; /* block1.0.weight, block1.1.num_batches_tracked */
    for (int i = 0; i < st_model_num_tensors(m); i++) {
        if (strcmp(st_model_tensor(m, i)->name, "block1.0.weight") == 0)
            w0 = i;
        if (strcmp(st_model_tensor(m, i)->name, "block1.1.num_batches_tracked") == 0)
            nbt = i;
    }
    CHECK(w0 >= 0 && nbt >= 0);

    CHECK(write_variant(m, path, w0, CH_SHAPE, meta, 2, &err) == 0);
    expect_load_error(path, m, "tensor 'block1.0.weight' has shape [16,1,3,3], expected [16,1,5,5]");
    CHECK(write_variant(m, path, w0, CH_DTYPE, meta, 2, &err) == 0);
    expect_load_error(path, m, "tensor 'block1.0.weight' has dtype F64, expected F32");
    CHECK(write_variant(m, path, nbt, CH_DROP, meta, 2, &err) == 0);
    expect_load_error(path, m, "tensor 'block1.1.num_batches_tracked' of the cnn model is missing");
    CHECK(write_variant(m, path, -1, CH_EXTRA, meta, 2, &err) == 0);
    expect_load_error(path, m, "unexpected tensor 'extra.weight' (not in the cnn model)");
    CHECK(write_variant(m, path, w0, CH_RENAME, meta, 2, &err) == 0);
    expect_load_error(path, m, "tensor 'block1.0.weight' of the cnn model is missing");

    const char *const badkind[] = {"stride_model", "resnet"};
    CHECK(write_variant(m, path, -1, CH_NONE, badkind, 1, &err) == 0);
    expect_load_error(path, m, "metadata stride_model is 'resnet', expected cnn, linear or mlp");

    /* Without metadata the kind comes from the tensor names (files saved by PyTorch). */
    CHECK(write_variant(m, path, -1, CH_NONE, NULL, 0, &err) == 0);
    st_model *x = st_model_load(path, 3, &err);
    CHECKF(x && st_model_get_kind(x) == ST_MODEL_CNN && tensors_equal(x, m), "%s", err.msg);
    st_model_free(x);
    CHECK(write_variant(m, path, w0, CH_RENAME, NULL, 0, &err) == 0);
    x = st_model_load(path, 1, &err);
    CHECK(x == NULL);
    CHECKF(contains(err.msg, path) && contains(err.msg, "cannot tell which model this is"), "%s",
           err.msg);
    st_model_free(x);
    CHECK(st_model_load_into(m, path, &err) == -1);
    CHECKF(contains(err.msg, "tensor 'block1.0.weight' of the cnn model is missing"), "%s",
           err.msg);
    st_model *lin = st_model_create(ST_MODEL_LINEAR, 1, 0, &err);
    st_model *mlp = st_model_create(ST_MODEL_MLP, 1, 0, &err);
    CHECK(lin && mlp);
    if (lin && mlp) {
        scramble(lin, 5);
        scramble(mlp, 6);
        CHECK(write_variant(lin, path, -1, CH_NONE, NULL, 0, &err) == 0);
        x = st_model_load(path, 1, &err);
        CHECK(x && st_model_get_kind(x) == ST_MODEL_LINEAR && tensors_equal(x, lin));
        st_model_free(x);
        CHECK(write_variant(mlp, path, -1, CH_NONE, NULL, 0, &err) == 0);
        x = st_model_load(path, 1, &err);
        CHECK(x && st_model_get_kind(x) == ST_MODEL_MLP && tensors_equal(x, mlp));
        st_model_free(x);
        /* Loading into a model of another kind. */
        CHECK(st_model_save(lin, path, &err) == 0);
        CHECK(st_model_load_into(m, path, &err) == -1);
        CHECKF(contains(err.msg, "the file holds a linear model (SingleLayerNet), not a cnn model "
                                 "(ConvNet)"),
               "%s", err.msg);
    }
    st_model_free(lin);
    st_model_free(mlp);

    /* Not a safetensors file, and no file. */
    CHECK(write_plain(path, "\x02\0\0\0\0\0\0\0[]", 10) == 0);
    expect_load_error(path, m, "does not start with '{'");
    tmp_path(path, "no_such_model.safetensors");
    expect_load_error(path, m, strerror(ENOENT));
    /* Saving into a missing directory. */
    tmp_path(path, "missing_dir/model.safetensors");
    CHECK(st_model_save(m, path, &err) == -1);
    CHECKF(contains(err.msg, path) && contains(err.msg, strerror(ENOENT)), "%s", err.msg);
    st_model_free(m);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/stride_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_json_values);
    RUN(test_json_errors);
    RUN(test_json_write);
    RUN(test_atomic_write);
    RUN(test_read_file);
    RUN(test_dtypes);
    RUN(test_roundtrip);
    RUN(test_writer_errors);
    RUN(test_malformed);
    RUN(test_truncations_and_mutations);
    RUN(test_read_errors_name_the_file);
    RUN(test_model_roundtrip);
    RUN(test_model_load_errors);
    remove_tree(tmpdir);
    return CHECK_DONE();
}
