/* test_plot.c - tests of the figures (src/plot.c).
 *
 * Renders both figures from synthetic data into a fresh temporary directory and checks them by
 * decoding the PNGs: the figure sizes; every pixel of the 25 image cells of the feature-map
 * figure (the exact viridis / gray colour of its map value, so crisp squares with no smoothing,
 * seams or lost rows, and nothing painted around the cells); the heights of the accuracy bars
 * against the axis mapping; that the legends hide no data point; that text without a glyph is an
 * error; that renders are byte-for-byte reproducible in PNG, SVG and PDF; and that a failed write
 * leaves no file behind. */
#include "check.h"
#include "plot.h"

#include <cairo.h>
#include <dirent.h>
#include <pango/pangocairo.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fontconfig's global teardown, called at the end so that leak checkers see no fontconfig
 * caches; declared weak because the test does not link fontconfig directly (cairo loads it). */
extern void FcFini(void) __attribute__((weak));

static char tmpdir[] = "/tmp/stride_test_plot.XXXXXX";

static const char *path_in(const char *name)
{
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *data = malloc(cap);
    size_t r;
    while (data && (r = fread(data + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *q = realloc(data, cap *= 2);
            if (!q) {
                free(data);
                data = NULL;
            }
            data = q;
        }
    }
    fclose(f);
    *len = n;
    return data;
}

static int same_files(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *da = read_all(a, &na), *db = read_all(b, &nb);
    int same = da && db && na == nb && na > 0 && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of the temporary directory whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* A decoded PNG and its pixels as 0xRRGGBB. */
typedef struct image {
    cairo_surface_t *s;
    int w, h, stride;
    const unsigned char *data;
} image;

static int load_png(const char *path, image *im)
{
    im->s = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(im->s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(im->s);
        im->s = NULL;
        return -1;
    }
    cairo_surface_flush(im->s);
    im->w = cairo_image_surface_get_width(im->s);
    im->h = cairo_image_surface_get_height(im->s);
    im->stride = cairo_image_surface_get_stride(im->s);
    im->data = cairo_image_surface_get_data(im->s);
    return 0;
}

static uint32_t px(const image *im, int x, int y)
{
    if (x < 0 || y < 0 || x >= im->w || y >= im->h)
        return 0xffffffffu;
    uint32_t v;
    memcpy(&v, im->data + (size_t)y * (size_t)im->stride + (size_t)x * 4, 4);
    return v & 0xffffff;
}

static uint32_t rgb3(const unsigned char *c) { return (uint32_t)c[0] << 16 | c[1] << 8 | c[2]; }

/* A small deterministic generator for test data. */
static uint32_t lcg_state = 12345;
static float lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (float)(lcg_state >> 8) / 16777216.0f;
}

/* ---------------------------------------------------------------- feature-map data */

enum { S1 = 14, S2 = 7, S3 = 7, C1 = 16, C2 = 32, C3 = 64 };
static float fm_image[28 * 28], fm_b1[C1 * S1 * S1], fm_b2[C2 * S2 * S2], fm_b3[C3 * S3 * S3];
static const float *const fm_maps[3] = {fm_b1, fm_b2, fm_b3};
static const int fm_sizes[3] = {S1, S2, S3};

static void make_featuremap_data(void)
{
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            fm_image[y * 28 + x] = (float)(x + y) / 54.0f * 0.8f + 0.2f * lcg();
    for (int i = 0; i < C1 * S1 * S1; i++)
        fm_b1[i] = lcg() * 3 - 1;
    for (int i = 0; i < C2 * S2 * S2; i++)
        fm_b2[i] = lcg();
    for (int i = 0; i < C3 * S3 * S3; i++)
        fm_b3[i] = lcg() * lcg() * 10;
    for (int i = 0; i < S2 * S2; i++) /* block 2, channel 3: constant -> all colour index 0 */
        fm_b2[3 * S2 * S2 + i] = 0.25f;
    fm_b3[7 * S3 * S3 + 2 * S3 + 5] = NAN; /* block 3, channel 7, (row 2, col 5): blank */
}

/* The colour the figure must show for pixel (y, x) of map v (size x size): viridis or gray of
 * the value scaled to the map's finite min..max; white where the value is not finite. */
static uint32_t expected_colour(const float *v, int size, int y, int x, int gray)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < size * size; i++)
        if (isfinite(v[i])) {
            lo = fminf(lo, v[i]);
            hi = fmaxf(hi, v[i]);
        }
    float f = v[y * size + x];
    if (!isfinite(f))
        return 0xffffff;
    int k = st_plot_colormap_index(f, lo, hi);
    if (gray) {
        uint32_t g = st_gray()[k];
        return g << 16 | g << 8 | g;
    }
    return rgb3(st_viridis() + 3 * k);
}

/* Every pixel of a cell is the colour of its map value (each map pixel a k x k square, top-left
 * first), and the one-pixel ring around the cell is white. Returns the number of cell pixels that
 * are exactly a viridis colour in *nviridis. */
static int check_cell(const image *im, const st_plot_rect *r, const float *v, int size, int gray,
                      int *nviridis)
{
    static unsigned char is_viridis[1 << 24];
    for (int i = 0; i < 256; i++)
        is_viridis[rgb3(st_viridis() + 3 * i)] = 1;
    int k = r->w / size, bad = 0;
    *nviridis = 0;
    for (int y = 0; y < r->h; y++)
        for (int x = 0; x < r->w; x++) {
            uint32_t got = px(im, r->x + x, r->y + y);
            *nviridis += is_viridis[got];
            if (got != expected_colour(v, size, y / k, x / k, gray)) {
                if (bad++ < 3)
                    fprintf(stderr, "    cell at (%d,%d): pixel (%d,%d) is %06x, expected %06x\n",
                            r->x, r->y, x, y, (unsigned)got,
                            (unsigned)expected_colour(v, size, y / k, x / k, gray));
            }
        }
    for (int i = -1; i <= r->w; i++) {
        bad += px(im, r->x + i, r->y - 1) != 0xffffff;
        bad += px(im, r->x + i, r->y + r->h) != 0xffffff;
        bad += px(im, r->x - 1, r->y + i) != 0xffffff;
        bad += px(im, r->x + r->w, r->y + i) != 0xffffff;
    }
    return bad;
}

/* ---------------------------------------------------------------- comparison data */

enum { E = 15 };
static double cmp_costs[3][E], cmp_times[3][E];
static const double *const cmp_c[3] = {cmp_costs[0], cmp_costs[1], cmp_costs[2]};
static const double *const cmp_t[3] = {cmp_times[0], cmp_times[1], cmp_times[2]};

/* The notebook's shapes: costs falling from ~0.6/0.45/0.42 to ~0.4/0.2/0.18, times ~0.1/0.6/3 s.
 * With rising != 0 the costs rise instead (so that the upper right is full of data). */
static void make_comparison_data(int rising)
{
    const double a[3] = {0.6, 0.45, 0.42}, b[3] = {0.4, 0.2, 0.18}, t[3] = {0.1, 0.6, 3.0};
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < E; e++) {
            double d = exp(-e / 4.0);
            cmp_costs[m][e] = rising ? 0.1 + 0.25 * m + 0.03 * e : b[m] + (a[m] - b[m]) * d;
            cmp_costs[m][e] += 0.004 * (lcg() - 0.5);
            cmp_times[m][e] = t[m] * (1 + 0.05 * (lcg() - 0.5));
        }
}

static double ax_x(const st_plot_axes *a, double x)
{
    return a->box.x + (x - a->xmin) / (a->xmax - a->xmin) * a->box.w;
}

static double ax_y(const st_plot_axes *a, double y)
{
    return a->box.y + a->box.h - (y - a->ymin) / (a->ymax - a->ymin) * a->box.h;
}

/* ---------------------------------------------------------------- tests */

static void test_format_from_path(void)
{
    st_plot_format f = ST_PLOT_SVG;
    st_error err = {{0}};
    CHECK(st_plot_format_from_path("a/b/fig.png", &f, &err) == 0 && f == ST_PLOT_PNG);
    CHECK(st_plot_format_from_path("fig.SVG", &f, &err) == 0 && f == ST_PLOT_SVG);
    CHECK(st_plot_format_from_path("x.y.pdf", &f, &err) == 0 && f == ST_PLOT_PDF);
    CHECK(st_plot_format_from_path("fig.jpg", &f, &err) == -1);
    CHECK(strstr(err.msg, "fig.jpg") != NULL);
    CHECK(st_plot_format_from_path("fig", &f, NULL) == -1);
    CHECK(st_plot_format_from_path("dir.png/fig", &f, NULL) == -1);
    CHECK(st_plot_format_from_path(".png/", &f, NULL) == -1);
    CHECK(strcmp(st_plot_format_name(ST_PLOT_PDF), "pdf") == 0);
}

static void test_colormaps(void)
{
    const unsigned char *v = st_viridis();
    /* matplotlib: viridis(0) = #440154, viridis(128) = #208f8c... as bytes 32,144,140 (truncated
     * from 0.127568, 0.566949, 0.550556), viridis(255) = #fde724. */
    CHECK(rgb3(v) == 0x440154);
    CHECK(rgb3(v + 3 * 128) == 0x20908c);
    CHECK(rgb3(v + 3 * 255) == 0xfde724);
    /* 254 different colours: truncation makes entries 104/105 and 137/138 equal. */
    int distinct = 1, rising_green = 1;
    for (int i = 1; i < 256; i++) {
        distinct += rgb3(v + 3 * i) != rgb3(v + 3 * (i - 1));
        rising_green &= v[3 * i + 1] >= v[3 * (i - 1) + 1];
    }
    CHECK(distinct == 254 && rising_green);
    CHECK(st_gray()[0] == 0 && st_gray()[255] == 255 && st_gray()[33] == 32);

    CHECK(st_plot_colormap_index(0, 0, 1) == 0);
    CHECK(st_plot_colormap_index(1, 0, 1) == 255);
    CHECK(st_plot_colormap_index(0.5f, 0, 1) == 128);
    CHECK(st_plot_colormap_index(-1, -1, 3) == 0);
    CHECK(st_plot_colormap_index(1.0f / 256 - 1e-6f, 0, 1) == 0);
    CHECK(st_plot_colormap_index(1.0f / 256 + 1e-6f, 0, 1) == 1);
    CHECK(st_plot_colormap_index(255.0f / 256 + 1e-6f, 0, 1) == 255);
    CHECK(st_plot_colormap_index(2, 2, 2) == 0); /* constant map */
    CHECK(st_plot_colormap_index(NAN, 0, 1) == 0);
    CHECK(st_plot_colormap_index(5, 0, 1) == 255 && st_plot_colormap_index(-5, 0, 1) == 0);
    int monotone = 1;
    for (int i = 1; i <= 1000; i++)
        monotone &= st_plot_colormap_index(i / 1000.0f, 0, 1) >=
                    st_plot_colormap_index((i - 1) / 1000.0f, 0, 1);
    CHECK(monotone);
}

static void test_cell_geometry(void)
{
    st_plot_rect r[25];
    int n = 0;
    CHECK(st_plot_featuremap_cell(0, 0, 28, &r[n++], NULL) == 0);
    CHECK(r[0].w == ST_PLOT_CELL_SIZE && r[0].h == ST_PLOT_CELL_SIZE);
    for (int row = 1; row <= 3; row++)
        for (int col = 0; col < 8; col++) {
            CHECK(st_plot_featuremap_cell(row, col, row == 1 ? 14 : 7, &r[n], NULL) == 0);
            CHECK(r[n].w == ST_PLOT_CELL_SIZE && r[n].h == ST_PLOT_CELL_SIZE);
            n++;
        }
    for (int i = 0; i < n; i++) {
        CHECK(r[i].x > 0 && r[i].y > 0 && r[i].x + r[i].w < ST_PLOT_FEATUREMAPS_WIDTH &&
              r[i].y + r[i].h < ST_PLOT_FEATUREMAPS_HEIGHT);
        for (int j = 0; j < i; j++) /* at least 2 pixels apart */
            CHECK(r[i].x >= r[j].x + r[j].w + 2 || r[j].x >= r[i].x + r[i].w + 2 ||
                  r[i].y >= r[j].y + r[j].h + 2 || r[j].y >= r[i].y + r[i].h + 2);
    }
    /* Sizes that do not divide the cell: the largest multiple, centred. */
    st_plot_rect a, b;
    CHECK(st_plot_featuremap_cell(2, 3, 7, &a, NULL) == 0);
    CHECK(st_plot_featuremap_cell(2, 3, 10, &b, NULL) == 0);
    CHECK(b.w == 160 && b.h == 160 && b.x == a.x + 4 && b.y == a.y + 4);
    st_error err = {{0}};
    CHECK(st_plot_featuremap_cell(0, 1, 28, &a, &err) == -1 && err.msg[0]);
    CHECK(st_plot_featuremap_cell(4, 0, 7, &a, NULL) == -1);
    CHECK(st_plot_featuremap_cell(1, 8, 7, &a, NULL) == -1);
    CHECK(st_plot_featuremap_cell(1, -1, 7, &a, NULL) == -1);
    CHECK(st_plot_featuremap_cell(1, 0, 0, &a, NULL) == -1);
    CHECK(st_plot_featuremap_cell(1, 0, ST_PLOT_CELL_SIZE + 1, &a, NULL) == -1);
}

static void test_featuremaps_png(void)
{
    const char *path = path_in("featuremaps.png");
    st_error err = {{0}};
    int rc = st_plot_featuremaps(path, ST_PLOT_PNG, fm_image, "Ankle boot", fm_maps, fm_sizes,
                                 &err);
    CHECKF(rc == 0, "%s", err.msg);
    image im;
    if (rc != 0 || load_png(path, &im) != 0) {
        CHECK(!"the figure can be decoded");
        return;
    }
    CHECK(im.w == ST_PLOT_FEATUREMAPS_WIDTH && im.h == ST_PLOT_FEATUREMAPS_HEIGHT);
    CHECK(im.w == 1600 && im.h == 800);

    st_plot_rect r;
    int nv;
    CHECK(st_plot_featuremap_cell(0, 0, 28, &r, NULL) == 0);
    CHECK(check_cell(&im, &r, fm_image, 28, 1, &nv) == 0);
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 8; c++) {
            int s = fm_sizes[b];
            const float *m = fm_maps[b] + (size_t)c * s * s;
            CHECK(st_plot_featuremap_cell(b + 1, c, s, &r, NULL) == 0);
            int bad = check_cell(&im, &r, m, s, 0, &nv);
            CHECKF(bad == 0, "block %d channel %d: %d wrong pixels", b + 1, c, bad);
            int k = r.w / s, blank = (b == 2 && c == 7) ? k * k : 0;
            CHECKF(nv == r.w * r.h - blank, "block %d channel %d: %d of %d pixels are viridis",
                   b + 1, c, nv, r.w * r.h - blank);
        }
    /* The constant map is all viridis(0); the empty cells of the first row are white. */
    CHECK(st_plot_featuremap_cell(2, 3, 7, &r, NULL) == 0);
    CHECK(px(&im, r.x + 5, r.y + 100) == 0x440154);
    CHECK(st_plot_featuremap_cell(1, 5, 7, &r, NULL) == 0);
    int white = 1;
    for (int y = r.y - 183; y < r.y - 183 + r.h; y += 3)
        for (int x = r.x; x < r.x + r.w; x += 3)
            white &= px(&im, x, y) == 0xffffff;
    CHECK(white);
    /* Text was drawn: dark pixels in the title band, above the first cell and left of rows. */
    int title = 0, original = 0, labels = 0;
    for (int y = 0; y < 50; y++)
        for (int x = 500; x < 1100; x++)
            title += (px(&im, x, y) & 0xff) < 100;
    CHECK(st_plot_featuremap_cell(0, 0, 28, &r, NULL) == 0);
    for (int y = r.y - 25; y < r.y; y++)
        for (int x = r.x; x < r.x + r.w; x++)
            original += (px(&im, x, y) & 0xff) < 100;
    for (int y = r.y + 183; y < 800; y++)
        for (int x = 0; x < r.x - 10; x++)
            labels += (px(&im, x, y) & 0xff) < 100;
    CHECK(title > 300 && original > 30 && labels > 300);
    cairo_surface_destroy(im.s);
}

static void test_comparison_png(void)
{
    const char *path = path_in("comparison.png");
    const double acc[3] = {84.7, 89.1, 92.4};
    st_error err = {{0}};
    make_comparison_data(0);
    int rc = st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, acc, &err);
    CHECKF(rc == 0, "%s", err.msg);
    st_plot_axes ax[3];
    CHECKF(st_plot_comparison_layout(E, cmp_c, cmp_t, acc, ax, &err) == 0, "%s", err.msg);
    image im;
    if (rc != 0 || load_png(path, &im) != 0) {
        CHECK(!"the figure can be decoded");
        return;
    }
    CHECK(im.w == ST_PLOT_COMPARISON_WIDTH && im.h == ST_PLOT_COMPARISON_HEIGHT);
    CHECK(im.w == 1800 && im.h == 500);
    for (int i = 0; i < 3; i++) {
        const st_plot_rect *b = &ax[i].box;
        CHECK(b->x > 30 && b->y > 20 && b->y + b->h < 470 && b->w > 400 && b->h > 300);
        CHECK(b->w == ax[0].box.w && b->h == ax[0].box.h && b->y == ax[0].box.y);
        if (i > 0)
            CHECK(b->x > ax[i - 1].box.x + ax[i - 1].box.w + 40);
        /* spines: the pixels just outside the box are dark */
        CHECK((px(&im, b->x - 1, b->y + b->h / 3) & 0xff) < 80);
        CHECK((px(&im, b->x + b->w / 3, b->y + b->h) & 0xff) < 80);
    }
    CHECK(ax[2].box.x + ax[2].box.w < 1800 - 10);
    CHECK(ax[2].ymin == 70 && ax[2].ymax == 100);
    CHECK(ax[0].xmin < 1 && ax[0].xmax > 15 && ax[0].xmax < 16);

    /* Bars: in the middle column of each, the bar colour runs from the top of the bar (y of the
     * accuracy) to the bottom of the axes (y of 70). The bar's black edge and the spine take up
     * to a pixel at each end; the bar's height is measured from its top to the axis line. */
    for (int i = 0; i < 3; i++) {
        const unsigned cols[3] = {0x4ecdc4, 0x45b7d1, 0xff6b6b};
        int x = (int)floor(ax_x(&ax[2], i)), top = -1, bottom = -1;
        for (int y = 0; y < im.h; y++)
            if (px(&im, x, y) == cols[i]) {
                if (top < 0)
                    top = y;
                bottom = y;
            }
        double want = ax_y(&ax[2], acc[i]);
        CHECKF(top >= 0 && fabs(top - want) <= 2, "bar %d: top at %d, expected %.1f", i, top,
               want);
        CHECKF(abs(bottom - (ax[2].box.y + ax[2].box.h - 1)) <= 2, "bar %d: bottom at %d", i,
               bottom);
        int h = ax[2].box.y + ax[2].box.h - top;
        double hwant = (acc[i] - 70) / 30 * ax[2].box.h;
        CHECKF(fabs(h - hwant) <= 2, "bar %d: %d pixels tall, expected %.1f", i, h, hwant);
    }

    /* Lines: the centre of every marker shows its series' colour (nothing, the legend in
     * particular, is drawn over the data). */
    const unsigned lc[3] = {0x1f77b4, 0xff7f0e, 0x2ca02c};
    for (int p = 0; p < 2; p++)
        for (int m = 0; m < 3; m++) {
            int hidden = 0;
            for (int e = 0; e < E; e++) {
                double v = p == 0 ? cmp_costs[m][e] : cmp_times[m][e];
                hidden += px(&im, (int)floor(ax_x(&ax[p], e + 1)),
                             (int)floor(ax_y(&ax[p], v))) != lc[m];
            }
            CHECKF(hidden == 0, "panel %d, series %d: %d markers hidden", p, m, hidden);
        }
    cairo_surface_destroy(im.s);
}

/* With rising costs the upper right corner is full: the legend must go elsewhere. */
static void test_legend_placement(void)
{
    const char *path = path_in("rising.png");
    const double acc[3] = {80, 85, 90};
    make_comparison_data(1);
    st_plot_axes ax[3];
    st_error err = {{0}};
    CHECKF(st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, acc, &err) == 0, "%s",
           err.msg);
    CHECK(st_plot_comparison_layout(E, cmp_c, cmp_t, acc, ax, NULL) == 0);
    image im;
    if (load_png(path, &im) != 0) {
        CHECK(!"the figure can be decoded");
        return;
    }
    const unsigned lc[3] = {0x1f77b4, 0xff7f0e, 0x2ca02c};
    int hidden = 0;
    for (int m = 0; m < 3; m++)
        for (int e = 0; e < E; e++)
            hidden += px(&im, (int)floor(ax_x(&ax[0], e + 1)),
                         (int)floor(ax_y(&ax[0], cmp_costs[m][e]))) != lc[m];
    CHECKF(hidden == 0, "%d markers hidden", hidden);
    /* The legend's frame (light gray, #cccccc) is somewhere in the panel. */
    int frame = 0;
    for (int y = ax[0].box.y; y < ax[0].box.y + ax[0].box.h; y++)
        for (int x = ax[0].box.x; x < ax[0].box.x + ax[0].box.w; x++)
            frame += px(&im, x, y) == 0xcccccc;
    CHECK(frame > 100);
    cairo_surface_destroy(im.s);
}

/* An accuracy under 70: no bar is visible, but its label is (just above the axis bottom). */
static void test_clipped_bar(void)
{
    const char *path = path_in("clipped.png");
    const double acc[3] = {65.0, 89.1, 100.0};
    make_comparison_data(0);
    st_error err = {{0}};
    CHECKF(st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, acc, &err) == 0, "%s",
           err.msg);
    st_plot_axes ax[3];
    CHECK(st_plot_comparison_layout(E, cmp_c, cmp_t, acc, ax, NULL) == 0);
    image im;
    if (load_png(path, &im) != 0) {
        CHECK(!"the figure can be decoded");
        return;
    }
    const st_plot_rect *b = &ax[2].box;
    int bar0 = 0, label0 = 0, bar2top = -1;
    for (int y = 0; y < im.h; y++)
        for (int x = 0; x < im.w; x++)
            bar0 += px(&im, x, y) == 0x4ecdc4;
    int x0 = (int)ax_x(&ax[2], 0);
    for (int y = b->y + b->h - 30; y < b->y + b->h; y++)
        for (int x = x0 - 30; x < x0 + 30; x++)
            label0 += (px(&im, x, y) & 0xff) < 100;
    for (int y = 0; y < im.h && bar2top < 0; y++)
        if (px(&im, (int)ax_x(&ax[2], 2), y) == 0xff6b6b)
            bar2top = y;
    CHECK(bar0 == 0);
    CHECK(label0 > 20);
    CHECKF(bar2top >= b->y && bar2top <= b->y + 2, "a 100%% bar starts at %d (box top %d)",
           bar2top, b->y);
    cairo_surface_destroy(im.s);
}

static void test_reproducible(void)
{
    const double acc[3] = {84.7, 89.1, 92.4};
    make_comparison_data(0);
    const char *ext[3] = {"png", "svg", "pdf"};
    for (int f = 0; f < 3; f++) {
        char a[64], b[64], c[64], d[64];
        snprintf(a, sizeof a, "fm_a.%s", ext[f]);
        snprintf(b, sizeof b, "fm_b.%s", ext[f]);
        snprintf(c, sizeof c, "cmp_a.%s", ext[f]);
        snprintf(d, sizeof d, "cmp_b.%s", ext[f]);
        st_error err = {{0}};
        st_plot_format fmt;
        CHECK(st_plot_format_from_path(a, &fmt, NULL) == 0 && (int)fmt == f);
        for (int rep = 0; rep < 2; rep++) {
            CHECKF(st_plot_featuremaps(path_in(rep ? b : a), fmt, fm_image, "Ankle boot",
                                       fm_maps, fm_sizes, &err) == 0,
                   "%s", err.msg);
            CHECKF(st_plot_comparison(path_in(rep ? d : c), fmt, E, cmp_c, cmp_t, acc, &err) == 0,
                   "%s", err.msg);
        }
        CHECKF(same_files(path_in(a), path_in(b)), "feature maps, %s", ext[f]);
        CHECKF(same_files(path_in(c), path_in(d)), "comparison, %s", ext[f]);
        size_t n = 0;
        unsigned char *data = read_all(path_in(a), &n);
        CHECK(data && n > 1000);
        if (data && n > 1000) {
            data[n - 1] = 0;
            if (f == ST_PLOT_PNG)
                CHECK(memcmp(data, "\x89PNG", 4) == 0);
            else if (f == ST_PLOT_SVG)
                CHECK(memcmp(data, "<?xml", 5) == 0 &&
                      strstr((char *)data, "width=\"1152pt\" height=\"576pt\""));
            else
                CHECK(memcmp(data, "%PDF-", 5) == 0 && !memmem(data, n, "CreationDate", 12) &&
                      memmem(data, n, "/MediaBox [ 0 0 1152 576 ]", 26));
        }
        free(data);
    }
    CHECK(count_temp_files() == 0);
}

static void test_glyphs(void)
{
    st_error err = {{0}};
    /* Hangul (Nanum fonts through fontconfig's fallback) */
    CHECKF(st_plot_featuremaps(path_in("hangul.png"), ST_PLOT_PNG, fm_image,
                               "\xec\x95\xb5\xed\x81\xb4 \xeb\xb6\x80\xec\xb8\xa0", fm_maps,
                               fm_sizes, &err) == 0,
           "%s (is fonts-nanum installed?)", err.msg);
    /* U+0378 is unassigned: no font has it. */
    const char *path = path_in("noglyph.svg");
    err.msg[0] = 0;
    CHECK(st_plot_featuremaps(path, ST_PLOT_SVG, fm_image, "Boot \xcd\xb8", fm_maps, fm_sizes,
                              &err) == -1);
    CHECK(strstr(err.msg, "no glyph") && strstr(err.msg, path));
    CHECK(!exists(path));
    /* Not UTF-8 */
    CHECK(st_plot_featuremaps(path_in("bad.png"), ST_PLOT_PNG, fm_image, "Boot \xff", fm_maps,
                              fm_sizes, &err) == -1);
    CHECK(!exists(path_in("bad.png")));
    CHECK(count_temp_files() == 0);
}

static void test_unwritable(void)
{
    const double acc[3] = {84.7, 89.1, 92.4};
    st_error err = {{0}};
    /* A directory that does not exist. */
    const char *path = path_in("missing/fig.png");
    CHECK(st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, acc, &err) == -1);
    CHECK(strstr(err.msg, path) != NULL);
    /* A directory where the file should be: the rename fails, the temporary file goes. */
    const char *dirpath = path_in("adir.pdf");
    CHECK(mkdir(dirpath, 0755) == 0);
    err.msg[0] = 0;
    CHECK(st_plot_featuremaps(dirpath, ST_PLOT_PDF, fm_image, "Ankle boot", fm_maps, fm_sizes,
                              &err) == -1);
    CHECK(strstr(err.msg, dirpath) != NULL);
    CHECK(count_temp_files() == 0);
    rmdir(dirpath);
}

static void test_bad_inputs(void)
{
    const double acc[3] = {84.7, 89.1, 92.4}, bad_acc[3] = {84.7, 101, 92.4};
    st_error err = {{0}};
    const char *path = path_in("bad_input.png");
    make_comparison_data(0);
    CHECK(st_plot_comparison(path, ST_PLOT_PNG, 0, cmp_c, cmp_t, acc, &err) == -1);
    CHECK(st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, bad_acc, &err) == -1);
    CHECK(strstr(err.msg, "FC Multi-Layer") != NULL);
    cmp_costs[2][4] = NAN;
    CHECK(st_plot_comparison(path, ST_PLOT_PNG, E, cmp_c, cmp_t, acc, &err) == -1);
    CHECK(strstr(err.msg, "epoch 5") != NULL);
    CHECK(st_plot_comparison_layout(E, cmp_c, cmp_t, acc, (st_plot_axes[3]){0}, NULL) == -1);
    make_comparison_data(0);
    CHECK(st_plot_comparison(path, (st_plot_format)7, E, cmp_c, cmp_t, acc, &err) == -1);
    const int bad_sizes[3] = {14, 0, 7}, big_sizes[3] = {14, 7, 500};
    CHECK(st_plot_featuremaps(path, ST_PLOT_PNG, fm_image, "x", fm_maps, bad_sizes, &err) == -1);
    CHECK(st_plot_featuremaps(path, ST_PLOT_PNG, fm_image, "x", fm_maps, big_sizes, &err) == -1);
    CHECK(st_plot_featuremaps(path, ST_PLOT_PNG, fm_image, NULL, fm_maps, fm_sizes, &err) == -1);
    CHECK(st_plot_featuremaps(NULL, ST_PLOT_PNG, fm_image, "x", fm_maps, fm_sizes, &err) == -1);
    CHECK(!exists(path));
    /* One epoch (degenerate x range) and equal values (degenerate y range) still draw. */
    const double one[1] = {0.5};
    const double *const c1[3] = {one, one, one};
    CHECKF(st_plot_comparison(path, ST_PLOT_PNG, 1, c1, c1, acc, &err) == 0, "%s", err.msg);
    CHECK(exists(path));
}

/* Removes the files the tests wrote, then the directory. */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlink(path_in(e->d_name));
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    make_featuremap_data();
    RUN(test_format_from_path);
    RUN(test_colormaps);
    RUN(test_cell_geometry);
    RUN(test_featuremaps_png);
    RUN(test_comparison_png);
    RUN(test_legend_placement);
    RUN(test_clipped_bar);
    RUN(test_reproducible);
    RUN(test_glyphs);
    RUN(test_unwritable);
    RUN(test_bad_inputs);
    if (getenv("STRIDE_KEEP_PLOTS"))
        printf("figures kept in %s\n", tmpdir);
    else
        remove_tmpdir();
    /* Release the fonts pango, cairo and fontconfig cache for the process, so that a leak
     * checker sees only what the library itself might leak. */
    pango_cairo_font_map_set_default(NULL);
    cairo_debug_reset_static_data();
    if (FcFini)
        FcFini();
    return CHECK_DONE();
}
