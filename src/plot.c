/* plot.c - the tutorial's two matplotlib figures (feature maps, model comparison) drawn with
 * cairo and pango, written as PNG, SVG or PDF. See plot.h for what is drawn.
 *
 * Everything is drawn in PNG pixel units (100 dpi, y down); SVG and PDF surfaces are scaled by
 * 72/100 so that their page has the figure's size in points. Sizes given in points below are
 * matplotlib's defaults (rcParams): font 10 pt, titles 12 pt, tick length and pad 3.5 pt, axis
 * label pad 4 pt, title pad 6 pt, line width 1.5 pt, spine and grid width 0.8 pt; the layout
 * follows tight_layout (1.08 font sizes of padding around and between the axes).
 *
 * A figure is rendered into memory (the PNG encoder and the vector surfaces write to a growable
 * buffer), then written with st_write_file_atomic (src/fileio.h): a temporary file next to the
 * target, flushed and renamed over it. Text is laid out with one PangoContext per figure whose
 * font options are fixed (no hinting, no hinted metrics), so text measures the same on every
 * surface and every run. */
#include "plot.h"

#include "fileio.h"
#include "internal.h"
#include "viridis.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <pango/pangocairo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DPI 100.0
#define PT (DPI / 72.0) /* pixels per point */
#define FONT_FAMILY "DejaVu Sans"
#define FONT_PT 10.0 /* matplotlib's font.size */
#define FS (FONT_PT * PT)

/* ================================================================ colour maps */

const unsigned char *st_viridis(void) { return st_viridis_table; }

const unsigned char *st_gray(void) { return st_gray_table; }

int st_plot_colormap_index(float v, float lo, float hi)
{
    if (!(hi > lo) || !(v > lo)) /* constant map, v at or below the minimum, or NaN */
        return 0;
    double t = ((double)v - (double)lo) / ((double)hi - (double)lo) * 256.0;
    if (!(t < 255.0))
        return 255;
    return (int)t;
}

/* ================================================================ formats and files */

const char *st_plot_format_name(st_plot_format fmt)
{
    switch (fmt) {
    case ST_PLOT_PNG: return "png";
    case ST_PLOT_SVG: return "svg";
    case ST_PLOT_PDF: return "pdf";
    }
    return "unknown";
}

int st_plot_format_from_path(const char *path, st_plot_format *fmt, st_error *err)
{
    if (!path)
        return st_seterr(err, "plot: no output path");
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (dot && strcasecmp(dot, ".png") == 0)
        *fmt = ST_PLOT_PNG;
    else if (dot && strcasecmp(dot, ".svg") == 0)
        *fmt = ST_PLOT_SVG;
    else if (dot && strcasecmp(dot, ".pdf") == 0)
        *fmt = ST_PLOT_PDF;
    else
        return st_seterr(err, "%s: unknown figure format (the name must end in .png, .svg or .pdf)",
                         path);
    return 0;
}

/* A growable byte buffer that cairo writes the encoded figure into. */
typedef struct membuf {
    unsigned char *data;
    size_t len, cap;
} membuf;

static cairo_status_t membuf_write(void *closure, const unsigned char *data, unsigned int length)
{
    membuf *b = closure;
    if (b->len + length > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + length)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            return CAIRO_STATUS_NO_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, length);
    b->len += length;
    return CAIRO_STATUS_SUCCESS;
}

/* cairo names an SVG file's top-level group and its embedded images after a process-wide count
 * of surfaces ("surface7", "image11"), so the same figure drawn twice in one process would not
 * be the same file. This renumbers those names in order of first appearance (cairo writes them
 * only in id="..." and "#..." references; embedded base64 data cannot contain a quote or '#'),
 * and marks each image to be drawn without smoothing, as cairo's nearest filter asks. */
static int svg_normalize(membuf *b)
{
    static const char *const kinds[2] = {"surface", "image"};
    static const char crisp[] = "<image style=\"image-rendering:optimizeSpeed;"
                                "image-rendering:pixelated\" ";
    long *seen[2] = {NULL, NULL};
    size_t nseen[2] = {0, 0}, capseen[2] = {0, 0};
    membuf out = {NULL, 0, 0};
    int ok = 1;
    size_t i = 0, copied = 0;
    while (ok && i < b->len) {
        const char *p = (const char *)b->data + i;
        size_t left = b->len - i;
        if (left > 7 && memcmp(p, "<image ", 7) == 0) {
            ok = membuf_write(&out, b->data + copied, (unsigned)(i - copied)) == 0 &&
                 membuf_write(&out, (const unsigned char *)crisp, sizeof crisp - 1) == 0;
            i += 7;
            copied = i;
            continue;
        }
        size_t pre = left > 4 && memcmp(p, "id=\"", 4) == 0 ? 4 : *p == '#' ? 1 : 0;
        int kind = -1;
        size_t klen = 0;
        for (int k = 0; pre && k < 2; k++) {
            klen = strlen(kinds[k]);
            if (left > pre + klen && memcmp(p + pre, kinds[k], klen) == 0 &&
                p[pre + klen] >= '0' && p[pre + klen] <= '9') {
                kind = k;
                break;
            }
        }
        if (kind < 0) {
            i++;
            continue;
        }
        size_t d = i + pre + klen, e = d;
        long num = 0;
        while (e < b->len && b->data[e] >= '0' && b->data[e] <= '9' && num < 100000000)
            num = num * 10 + (b->data[e++] - '0');
        size_t k;
        for (k = 0; k < nseen[kind] && seen[kind][k] != num; k++)
            ;
        if (k == nseen[kind]) {
            if (nseen[kind] == capseen[kind]) {
                size_t cap = capseen[kind] ? 2 * capseen[kind] : 64;
                long *q = realloc(seen[kind], cap * sizeof *q);
                if (!q) {
                    ok = 0;
                    break;
                }
                seen[kind] = q;
                capseen[kind] = cap;
            }
            seen[kind][nseen[kind]++] = num;
        }
        char digits[24];
        int nd = snprintf(digits, sizeof digits, "%zu", k);
        ok = membuf_write(&out, b->data + copied, (unsigned)(d - copied)) == 0 &&
             membuf_write(&out, (const unsigned char *)digits, (unsigned)nd) == 0;
        i = copied = e;
    }
    if (ok)
        ok = membuf_write(&out, b->data + copied, (unsigned)(b->len - copied)) == 0;
    free(seen[0]);
    free(seen[1]);
    if (!ok) {
        free(out.data);
        return -1;
    }
    free(b->data);
    *b = out;
    return 0;
}

/* ================================================================ canvas and text */

typedef struct canvas {
    const char *path; /* for error messages */
    st_plot_format fmt;
    cairo_surface_t *surface;
    cairo_t *cr;
    PangoContext *pango;
    membuf out;            /* the encoded figure */
    int unknown_glyphs;    /* characters no installed font could draw */
    char unknown_text[80]; /* the first text that had one */
} canvas;

/* Opens a canvas of width x height pixels; measure_only gives a 1x1 image surface used only to
 * lay out text (the same font setup, so the same measurements). */
static int canvas_open(canvas *cv, const char *path, st_plot_format fmt, int width, int height,
                       int measure_only, st_error *err)
{
    memset(cv, 0, sizeof *cv);
    cv->path = path;
    cv->fmt = fmt;
    double wpt = width * 72.0 / DPI, hpt = height * 72.0 / DPI;
    if (measure_only)
        cv->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    else if (fmt == ST_PLOT_PNG)
        cv->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    else if (fmt == ST_PLOT_SVG) {
        cv->surface = cairo_svg_surface_create_for_stream(membuf_write, &cv->out, wpt, hpt);
        cairo_svg_surface_restrict_to_version(cv->surface, CAIRO_SVG_VERSION_1_1);
        cairo_svg_surface_set_document_unit(cv->surface, CAIRO_SVG_UNIT_PT);
    } else if (fmt == ST_PLOT_PDF) {
        cv->surface = cairo_pdf_surface_create_for_stream(membuf_write, &cv->out, wpt, hpt);
        /* An invalid (empty) date removes /CreationDate, so that renders are identical. */
        cairo_pdf_surface_set_metadata(cv->surface, CAIRO_PDF_METADATA_CREATE_DATE, "");
        cairo_pdf_surface_set_metadata(cv->surface, CAIRO_PDF_METADATA_CREATOR,
                                       "Stride " STRIDE_VERSION);
    } else
        return st_seterr(err, "%s: unknown figure format %d", path, (int)fmt);
    if (cairo_surface_status(cv->surface) != CAIRO_STATUS_SUCCESS) {
        cairo_status_t st = cairo_surface_status(cv->surface);
        cairo_surface_destroy(cv->surface);
        cv->surface = NULL;
        return st_seterr(err, "%s: cannot create a %s surface: %s", path,
                         st_plot_format_name(fmt), cairo_status_to_string(st));
    }
    cv->cr = cairo_create(cv->surface);
    /* The text context is made before any scaling, so text is laid out in pixel units. */
    cv->pango = pango_cairo_create_context(cv->cr);
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    pango_cairo_context_set_font_options(cv->pango, fo);
    cairo_font_options_destroy(fo);
    if (fmt != ST_PLOT_PNG && !measure_only)
        cairo_scale(cv->cr, 72.0 / DPI, 72.0 / DPI);
    cairo_set_source_rgb(cv->cr, 1, 1, 1);
    cairo_paint(cv->cr);
    return 0;
}

static void canvas_free(canvas *cv)
{
    if (cv->pango)
        g_object_unref(cv->pango);
    if (cv->cr)
        cairo_destroy(cv->cr);
    if (cv->surface)
        cairo_surface_destroy(cv->surface);
    free(cv->out.data);
    memset(cv, 0, sizeof *cv);
}

/* Finishes the drawing, checks it (cairo errors, missing glyphs) and writes the file. */
static int canvas_save(canvas *cv, st_error *err)
{
    cairo_status_t st = cairo_status(cv->cr);
    if (st == CAIRO_STATUS_SUCCESS) {
        if (cv->fmt == ST_PLOT_PNG) {
            cairo_surface_flush(cv->surface);
            st = cairo_surface_write_to_png_stream(cv->surface, membuf_write, &cv->out);
        } else {
            cairo_surface_finish(cv->surface);
            st = cairo_surface_status(cv->surface);
            if (st == CAIRO_STATUS_SUCCESS && cv->fmt == ST_PLOT_SVG && svg_normalize(&cv->out))
                st = CAIRO_STATUS_NO_MEMORY;
        }
    }
    if (st != CAIRO_STATUS_SUCCESS)
        return st_seterr(err, "%s: drawing the figure failed: %s", cv->path,
                         cairo_status_to_string(st));
    if (cv->unknown_glyphs > 0)
        return st_seterr(err,
                         "%s: %d character(s) of the text \"%s\" have no glyph in any installed "
                         "font",
                         cv->path, cv->unknown_glyphs, cv->unknown_text);
    const void *chunk = cv->out.data;
    return st_write_file_atomic(cv->path, &chunk, &cv->out.len, 1, err);
}

/* Copies text into dst (size bytes) for a one-line error message: control characters become
 * spaces, and a text too long is cut at a character boundary and ends in "...". */
static void quote_text(char *dst, size_t size, const char *text)
{
    size_t n = strlen(text), max = size - 4;
    int cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)text[i] < 0x20 ? ' ' : text[i];
    memcpy(dst + n, cut ? "..." : "", cut ? 4 : 1);
}

typedef enum { HA_LEFT, HA_CENTER, HA_RIGHT } halign;
/* Vertical anchors: VA_CENTER_BASELINE is halfway between the first baseline and the ascender
 * (matplotlib's "center_baseline", used for y tick labels). */
typedef enum { VA_TOP, VA_CENTER, VA_CENTER_BASELINE, VA_BASELINE, VA_BOTTOM } valign;

/* A laid-out text: DejaVu Sans at size_pt, lines aligned by ha. Counts missing glyphs. */
static PangoLayout *text_layout(canvas *cv, const char *text, double size_pt, int bold, halign ha)
{
    PangoLayout *lay = pango_layout_new(cv->pango);
    PangoFontDescription *fd = pango_font_description_from_string(FONT_FAMILY);
    pango_font_description_set_absolute_size(fd, size_pt * PT * PANGO_SCALE);
    pango_font_description_set_weight(fd, bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
    pango_layout_set_font_description(lay, fd);
    pango_font_description_free(fd);
    pango_layout_set_alignment(lay, ha == HA_LEFT     ? PANGO_ALIGN_LEFT
                                    : ha == HA_CENTER ? PANGO_ALIGN_CENTER
                                                      : PANGO_ALIGN_RIGHT);
    pango_layout_set_text(lay, text, -1);
    int unknown = pango_layout_get_unknown_glyphs_count(lay);
    if (unknown > 0) {
        if (cv->unknown_glyphs == 0)
            quote_text(cv->unknown_text, sizeof cv->unknown_text, text);
        cv->unknown_glyphs += unknown;
    }
    return lay;
}

/* The box of a laid-out text in pixels, relative to the layout's origin, the way matplotlib
 * (3.9+) measures text: horizontally the logical extent; vertically from the font's typographic
 * ascender above the first baseline to its descender below the last (DejaVu Sans: 0.760 and
 * 0.240 em), plus half the line gap (0.2 em) at each end for text of several lines. Top-,
 * centre- and bottom-aligned text then sits where matplotlib puts it. */
typedef struct text_box {
    double x, w;          /* left edge and width */
    double top, h;        /* top edge and height */
    double baseline;      /* the first line's baseline */
} text_box;

#define ASCENT_EM 0.760
#define DESCENT_EM 0.240
#define LINE_GAP_EM 0.200

static text_box layout_box(PangoLayout *lay, double size_pt)
{
    PangoRectangle r;
    pango_layout_get_extents(lay, NULL, &r);
    double em = size_pt * PT;
    double first = pango_layout_get_baseline(lay) / (double)PANGO_SCALE, last = first;
    PangoLayoutIter *it = pango_layout_get_iter(lay);
    while (pango_layout_iter_next_line(it))
        last = pango_layout_iter_get_baseline(it) / (double)PANGO_SCALE;
    pango_layout_iter_free(it);
    double gap = pango_layout_get_line_count(lay) > 1 ? LINE_GAP_EM / 2 * em : 0;
    text_box b = {r.x / (double)PANGO_SCALE, r.width / (double)PANGO_SCALE,
                  first - ASCENT_EM * em - gap,
                  last - first + (ASCENT_EM + DESCENT_EM) * em + 2 * gap, first};
    return b;
}

static text_box measure_text(canvas *cv, const char *text, double size_pt, int bold)
{
    PangoLayout *lay = text_layout(cv, text, size_pt, bold, HA_LEFT);
    text_box b = layout_box(lay, size_pt);
    g_object_unref(lay);
    return b;
}

/* Draws text in black with its anchor (ha, va) at (x, y), rotated by angle radians about it
 * (the anchor is taken in the text's own, unrotated frame, like matplotlib's
 * rotation_mode="anchor"). */
static void draw_text(canvas *cv, const char *text, double size_pt, int bold, double x, double y,
                      halign ha, valign va, double angle)
{
    PangoLayout *lay = text_layout(cv, text, size_pt, bold, ha);
    text_box b = layout_box(lay, size_pt);
    double ax = ha == HA_LEFT ? b.x : ha == HA_CENTER ? b.x + b.w / 2 : b.x + b.w;
    double ay = va == VA_TOP               ? b.top
                : va == VA_CENTER          ? b.top + b.h / 2
                : va == VA_CENTER_BASELINE ? b.baseline - ASCENT_EM * size_pt * PT / 2
                : va == VA_BASELINE        ? b.baseline
                                           : b.top + b.h;
    cairo_t *cr = cv->cr;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (angle != 0)
        cairo_rotate(cr, angle);
    cairo_move_to(cr, -ax, -ay);
    cairo_set_source_rgb(cr, 0, 0, 0);
    pango_cairo_show_layout(cr, lay);
    cairo_restore(cr);
    g_object_unref(lay);
}

static void set_rgb(cairo_t *cr, unsigned rgb, double alpha)
{
    cairo_set_source_rgba(cr, ((rgb >> 16) & 255) / 255.0, ((rgb >> 8) & 255) / 255.0,
                          (rgb & 255) / 255.0, alpha);
}

/* The centre of the pixel row or column a thin line at p falls in, so that it is drawn crisply
 * (matplotlib snaps axis lines the same way). */
static double snap(double p) { return floor(p) + 0.5; }

/* ================================================================ feature maps */

/* Cell (row, col) of the 4 x 8 grid, as matplotlib's tight_layout places 16 x 8 inch subplots
 * with square images: a 168-pixel square every 186 pixels across and 183 down. */
#define FM_X0 114
#define FM_Y0 68
#define FM_PITCH_X 186
#define FM_PITCH_Y 183

int st_plot_featuremap_cell(int row, int col, int size, st_plot_rect *rect, st_error *err)
{
    if (row < 0 || row > ST_PLOT_MAP_ROWS || col < 0 || col >= ST_PLOT_MAP_COLUMNS ||
        (row == 0 && col != 0))
        return st_seterr(err, "feature maps: no cell at row %d, column %d", row, col);
    if (size < 1 || size > ST_PLOT_CELL_SIZE)
        return st_seterr(err, "feature maps: a map of size %d does not fit a %d-pixel cell", size,
                         ST_PLOT_CELL_SIZE);
    int side = ST_PLOT_CELL_SIZE / size * size;
    int inset = (ST_PLOT_CELL_SIZE - side) / 2;
    rect->x = FM_X0 + col * FM_PITCH_X + inset;
    rect->y = FM_Y0 + row * FM_PITCH_Y + inset;
    rect->w = rect->h = side;
    return 0;
}

/* Draws a size x size map (row-major) into rect, in viridis or gray, scaled to the map's own
 * min..max; values that are not finite stay blank. Each map pixel becomes a square of
 * k = rect.w / size pixels: the map is an image surface scaled by the whole number k with
 * nearest-neighbour filtering at a whole-pixel origin (a PDF marks it /Interpolate false). SVG
 * renderers smooth scaled images whatever the file asks, so for SVG the image is made at the
 * cell's full size, k x k pixels per value, and drawn unscaled, as matplotlib does. */
static void draw_map(canvas *cv, const float *v, int size, const st_plot_rect *rect, int gray)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < size * size; i++)
        if (isfinite(v[i])) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    int k = rect->w / size, rep = cv->fmt == ST_PLOT_SVG ? k : 1, side = size * rep;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, side, side);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        /* Out of memory: make the drawing fail, so that the figure is not written. */
        cairo_set_source_surface(cv->cr, img, 0, 0);
        cairo_surface_destroy(img);
        return;
    }
    cairo_surface_flush(img);
    unsigned char *data = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    for (int y = 0; y < side; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)y * (size_t)stride);
        for (int x = 0; x < side; x++) {
            float f = v[(y / rep) * size + x / rep];
            if (!isfinite(f)) {
                row[x] = 0; /* transparent */
                continue;
            }
            int c = st_plot_colormap_index(f, lo, hi);
            uint32_t r, g, b;
            if (gray) {
                r = g = b = st_gray_table[c];
            } else {
                r = st_viridis_table[3 * c];
                g = st_viridis_table[3 * c + 1];
                b = st_viridis_table[3 * c + 2];
            }
            row[x] = 0xff000000u | r << 16 | g << 8 | b;
        }
    }
    cairo_surface_mark_dirty(img);
    cairo_t *cr = cv->cr;
    cairo_save(cr);
    cairo_translate(cr, rect->x, rect->y);
    cairo_scale(cr, (double)k / rep, (double)k / rep);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_rectangle(cr, 0, 0, side, side);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(img);
}

int st_plot_featuremaps(const char *path, st_plot_format fmt, const float *image,
                        const char *class_name, const float *const maps[3], const int sizes[3],
                        st_error *err)
{
    static const char *const row_labels[ST_PLOT_MAP_ROWS] = {"Block 1", "Block 2", "Block 3"};
    if (!path)
        return st_seterr(err, "feature maps: no output path");
    if (!image || !class_name || !maps || !sizes)
        return st_seterr(err, "%s: missing image, class name or feature maps", path);
    if (!g_utf8_validate(class_name, -1, NULL))
        return st_seterr(err, "%s: the class name is not valid UTF-8", path);
    for (int b = 0; b < ST_PLOT_MAP_ROWS; b++) {
        if (!maps[b])
            return st_seterr(err, "%s: missing the feature maps of block %d", path, b + 1);
        if (sizes[b] < 1 || sizes[b] > ST_PLOT_CELL_SIZE)
            return st_seterr(err, "%s: block %d's maps are %dx%d, expected 1..%d pixels a side",
                             path, b + 1, sizes[b], sizes[b], ST_PLOT_CELL_SIZE);
    }

    canvas cv;
    if (canvas_open(&cv, path, fmt, ST_PLOT_FEATUREMAPS_WIDTH, ST_PLOT_FEATUREMAPS_HEIGHT, 0,
                    err) != 0)
        return -1;

    /* suptitle: 14 pt, centred, its top at y = 0.98 of the figure. */
    size_t tlen = strlen(class_name) + 32;
    char *title = malloc(tlen);
    if (!title) {
        canvas_free(&cv);
        return st_seterr(err, "%s: out of memory", path);
    }
    snprintf(title, tlen, "Feature Maps - input: %s", class_name);
    draw_text(&cv, title, 14, 0, ST_PLOT_FEATUREMAPS_WIDTH / 2.0,
              0.02 * ST_PLOT_FEATUREMAPS_HEIGHT, HA_CENTER, VA_TOP, 0);
    free(title);

    /* The input image, titled like an axes title (9 pt, 6 pt above the axes). */
    st_plot_rect r;
    st_plot_featuremap_cell(0, 0, ST_PLOT_IMAGE_SIZE, &r, NULL);
    draw_map(&cv, image, ST_PLOT_IMAGE_SIZE, &r, 1);
    draw_text(&cv, "Original", 9, 0, r.x + r.w / 2.0, r.y - 6 * PT, HA_CENTER, VA_BASELINE, 0);

    for (int b = 0; b < ST_PLOT_MAP_ROWS; b++) {
        int s = sizes[b];
        for (int c = 0; c < ST_PLOT_MAP_COLUMNS; c++) {
            st_plot_featuremap_cell(b + 1, c, s, &r, NULL);
            draw_map(&cv, maps[b] + (size_t)c * (size_t)s * (size_t)s, s, &r, 0);
        }
        /* Row label, right-aligned, 0.3 cell widths left of the row, centred on it. */
        char label[64];
        snprintf(label, sizeof label, "%s\n(%d\xc3\x97%d)", row_labels[b], s, s); /* U+00D7 */
        double cy = FM_Y0 + (b + 1) * FM_PITCH_Y + ST_PLOT_CELL_SIZE / 2.0;
        draw_text(&cv, label, FONT_PT, 0, FM_X0 - 0.3 * ST_PLOT_CELL_SIZE, cy, HA_RIGHT,
                  VA_CENTER, 0);
    }

    int rc = canvas_save(&cv, err);
    canvas_free(&cv);
    return rc;
}

/* ================================================================ comparison: axes */

#define MAX_TICKS 24

static const char *const model_names[3] = {"FC 1-Layer", "FC Multi-Layer", "CNN (3-Block)"};
static const unsigned line_colors[3] = {0x1f77b4, 0xff7f0e, 0x2ca02c}; /* tab10 */
static const unsigned bar_colors[3] = {0x4ecdc4, 0x45b7d1, 0xff6b6b};

/* The ticks of one axis: positions in data units and their labels. */
typedef struct ticks {
    int n;
    double v[MAX_TICKS];
    char label[MAX_TICKS][48];
} ticks;

/* One panel: what it shows, its limits, ticks and place in the figure. */
typedef struct panel {
    const char *title, *xlabel, *ylabel;
    int bars;                   /* the accuracy bar chart (else lines) */
    const double *const *series; /* lines: 3 series of n values at x = 1..n */
    int n;
    double xmin, xmax, ymin, ymax;
    ticks xt, yt;
    double left, bottom; /* decoration extents outside the box, pixels */
    st_plot_axes ax;
} panel;

/* matplotlib.transforms.nonsingular: widens an empty or degenerate interval. */
static void nonsingular(double *lo, double *hi, double expander, double tiny)
{
    if (*hi < *lo) {
        double t = *lo;
        *lo = *hi;
        *hi = t;
    }
    double m = fmax(fabs(*lo), fabs(*hi));
    if (m < 1e6 / tiny * 2.2250738585072014e-308) {
        *lo = -expander;
        *hi = expander;
    } else if (*hi - *lo <= m * tiny) {
        if (*hi == 0 && *lo == 0) {
            *lo = -expander;
            *hi = expander;
        } else {
            *lo -= expander * fabs(*lo);
            *hi += expander * fabs(*hi);
        }
    }
}

/* Axis limits from data as matplotlib's autoscale sets them: the data range, made non-singular,
 * with 5% margins. */
static void autoscale(double dmin, double dmax, double *lo, double *hi)
{
    nonsingular(&dmin, &dmax, 0.05, 1e-15);
    double d = (dmax - dmin) * 0.05;
    *lo = dmin - d;
    *hi = dmax + d;
}

/* Python's divmod for floats: d = floor(x / step), m = x - d * step. */
static double pydivmod(double x, double step, double *m)
{
    double d = floor(x / step);
    *m = x - d * step;
    return d;
}

/* matplotlib's MaxNLocator (steps 1, 2, 2.5, 5, 10; at most nbins intervals; at least 2 ticks
 * inside the limits): nice tick positions for the interval lo..hi, including the ones just
 * outside it. */
static int nice_ticks(double lo, double hi, int nbins, double *out, int max_out)
{
    static const double steps[] = {0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20};
    const int nsteps = (int)(sizeof steps / sizeof steps[0]);
    nonsingular(&lo, &hi, 1e-13, 1e-14);
    double dv = fabs(hi - lo), meanv = (hi + lo) / 2, offset = 0;
    if (fabs(meanv) / dv >= 100)
        offset = copysign(pow(10, floor(log10(fabs(meanv)))), meanv);
    double scale = pow(10, floor(log10(dv / nbins)));
    double vmin = lo - offset, vmax = hi - offset;
    double raw_step = (vmax - vmin) / nbins;
    int istep = nsteps - 1;
    for (int i = 0; i < nsteps; i++)
        if (steps[i] * scale >= raw_step) {
            istep = i;
            break;
        }
    int n = 0;
    for (int i = istep; i >= 0; i--) {
        double step = steps[i] * scale;
        double best_vmin = floor(vmin / step) * step;
        double tol = 1e-10;
        if (offset != 0)
            tol = fmin(0.4999, fmax(1e-10, pow(10, log10(fabs(offset) / step) - 12)));
        double m;
        double low = pydivmod(vmin - best_vmin, step, &m);
        if (fabs(m / step - 1) < tol)
            low += 1;
        double high = pydivmod(vmax - best_vmin, step, &m);
        if (!(fabs(m / step) < tol))
            high += 1;
        n = 0;
        int inside = 0;
        for (double k = low; k <= high && n < max_out; k++) {
            double t = k * step + best_vmin;
            inside += t <= vmax && t >= vmin;
            out[n++] = t + offset;
        }
        if (inside >= 2)
            break;
    }
    return n;
}

/* Labels like matplotlib's ScalarFormatter: the same number of decimals for every tick, as few
 * as tell them apart; a real minus sign for negative numbers. */
static void format_ticks(ticks *t)
{
    if (t->n == 0)
        return;
    double lo = t->v[0], hi = t->v[0];
    for (int i = 1; i < t->n; i++) {
        lo = fmin(lo, t->v[i]);
        hi = fmax(hi, t->v[i]);
    }
    double range = hi - lo;
    if (range == 0)
        range = fmax(fabs(lo), fabs(hi));
    if (range == 0)
        range = 1;
    int oom = (int)floor(log10(range));
    double thresh = 1e-3 * pow(10, oom);
    int sig = 3 - oom > 0 ? 3 - oom : 0;
    while (sig >= 0) {
        double worst = 0, p = pow(10, sig);
        for (int i = 0; i < t->n; i++)
            worst = fmax(worst, fabs(t->v[i] - round(t->v[i] * p) / p));
        if (worst < thresh)
            sig--;
        else
            break;
    }
    sig++;
    if (sig > 12)
        sig = 12;
    for (int i = 0; i < t->n; i++) {
        double v = t->v[i];
        if (fabs(v) < 1e-8 * fmax(1.0, range))
            v = 0;
        char num[40];
        snprintf(num, sizeof num, "%.*f", sig, fabs(v));
        int neg = v < 0 && strspn(num, "0.") != strlen(num);
        snprintf(t->label[i], sizeof t->label[i], "%s%s", neg ? "\xe2\x88\x92" : "", num);
    }
}

/* Keeps the ticks within lo..hi (matplotlib draws only those). */
static void keep_visible(ticks *t, double lo, double hi)
{
    double eps = (hi - lo) * 1e-9;
    int k = 0;
    for (int i = 0; i < t->n; i++)
        if (t->v[i] >= lo - eps && t->v[i] <= hi + eps) {
            t->v[k] = t->v[i];
            memcpy(t->label[k], t->label[i], sizeof t->label[k]);
            k++;
        }
    t->n = k;
}

/* Ticks for a panel whose box is w x h pixels (matplotlib's tick space: one tick per 3 font
 * sizes across, 2 font sizes up, 1..9 intervals). */
static void panel_ticks(panel *p, double w, double h)
{
    if (p->bars) {
        p->xt.n = 3;
        for (int i = 0; i < 3; i++) {
            p->xt.v[i] = i;
            snprintf(p->xt.label[i], sizeof p->xt.label[i], "%s", model_names[i]);
        }
    } else {
        int nb = (int)floor(w / PT / (FONT_PT * 3));
        nb = nb < 1 ? 1 : nb > 9 ? 9 : nb;
        p->xt.n = nice_ticks(p->xmin, p->xmax, nb, p->xt.v, MAX_TICKS);
        format_ticks(&p->xt);
        keep_visible(&p->xt, p->xmin, p->xmax);
    }
    int nb = (int)floor(h / PT / (FONT_PT * 2));
    nb = nb < 1 ? 1 : nb > 9 ? 9 : nb;
    p->yt.n = nice_ticks(p->ymin, p->ymax, nb, p->yt.v, MAX_TICKS);
    format_ticks(&p->yt);
    keep_visible(&p->yt, p->ymin, p->ymax);
}

/* Tick marks and labels: 3.5 pt ticks, labels 3.5 pt beyond them; axis labels 4 pt further. */
#define TICK_LEN (3.5 * PT)
#define TICK_PAD (3.5 * PT)
#define LABEL_PAD (4 * PT)
#define TITLE_PAD (6 * PT)
#define TITLE_PT 12.0

/* Measures the decorations of p outside its box: left (y tick labels, y label), bottom (x tick
 * labels, x label). Returns the height above the box (title). */
static double panel_measure(canvas *cv, panel *p)
{
    double wmax = 0, hmax = 0;
    for (int i = 0; i < p->yt.n; i++)
        wmax = fmax(wmax, measure_text(cv, p->yt.label[i], FONT_PT, 0).w);
    for (int i = 0; i < p->xt.n; i++)
        hmax = fmax(hmax, measure_text(cv, p->xt.label[i], FONT_PT, 0).h);
    p->left = TICK_LEN + TICK_PAD + wmax + LABEL_PAD + measure_text(cv, p->ylabel, FONT_PT, 0).h;
    p->bottom = TICK_LEN + TICK_PAD + hmax;
    if (p->xlabel)
        p->bottom += LABEL_PAD + measure_text(cv, p->xlabel, FONT_PT, 0).h;
    return TITLE_PAD + ASCENT_EM * TITLE_PT * PT;
}

/* Sets up the three panels and lays them out like tight_layout: equal boxes, 1.08 font sizes
 * of padding around the decorations and between the panels. */
static int comparison_setup(canvas *cv, int epochs, const double *const costs[3],
                            const double *const times[3], const double acc[3], panel p[3],
                            st_error *err)
{
    const char *path = cv->path;
    if (epochs < 1)
        return st_seterr(err, "%s: no epochs to plot", path);
    if (!costs || !times || !acc)
        return st_seterr(err, "%s: missing costs, times or accuracies", path);
    for (int m = 0; m < 3; m++) {
        if (!costs[m] || !times[m])
            return st_seterr(err, "%s: missing the costs or times of %s", path, model_names[m]);
        for (int e = 0; e < epochs; e++) {
            if (!isfinite(costs[m][e]))
                return st_seterr(err, "%s: the cost of %s in epoch %d is not finite", path,
                                 model_names[m], e + 1);
            if (!isfinite(times[m][e]))
                return st_seterr(err, "%s: the time of %s in epoch %d is not finite", path,
                                 model_names[m], e + 1);
        }
        if (!(acc[m] >= 0 && acc[m] <= 100))
            return st_seterr(err, "%s: the accuracy of %s (%g) is not a percentage", path,
                             model_names[m], acc[m]);
    }
    memset(p, 0, 3 * sizeof *p);
    p[0] = (panel){.title = "Training Cost", .xlabel = "Epoch", .ylabel = "Cost",
                   .series = costs, .n = epochs};
    p[1] = (panel){.title = "Training Time per Epoch", .xlabel = "Epoch",
                   .ylabel = "Time (seconds)", .series = times, .n = epochs};
    p[2] = (panel){.title = "Test Accuracy Comparison", .ylabel = "Test Accuracy (%)", .bars = 1};
    for (int i = 0; i < 2; i++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int m = 0; m < 3; m++)
            for (int e = 0; e < epochs; e++) {
                lo = fmin(lo, p[i].series[m][e]);
                hi = fmax(hi, p[i].series[m][e]);
            }
        autoscale(1, epochs, &p[i].xmin, &p[i].xmax);
        autoscale(lo, hi, &p[i].ymin, &p[i].ymax);
    }
    autoscale(-0.4, 2.4, &p[2].xmin, &p[2].xmax); /* bars 0.8 wide at 0, 1, 2 */
    p[2].ymin = 70;
    p[2].ymax = 100;

    const double W = ST_PLOT_COMPARISON_WIDTH, H = ST_PLOT_COMPARISON_HEIGHT;
    const double pad = 1.08 * FS;
    double bw = (W - 2 * pad) / 3 - 80, bh = H - 100; /* a first guess for the tick density */
    for (int iter = 0; iter < 3; iter++) {
        double top = 0, bottom = 0, gap = 0;
        for (int i = 0; i < 3; i++) {
            panel_ticks(&p[i], bw, bh);
            top = fmax(top, panel_measure(cv, &p[i]));
            bottom = fmax(bottom, p[i].bottom);
            if (i > 0)
                gap = fmax(gap, p[i].left);
        }
        double left = pad + p[0].left;
        gap += pad;
        double right = pad;
        int w = (int)floor((W - left - right - 2 * gap) / 3);
        int y = (int)ceil(pad + top);
        int h = (int)floor(H - pad - bottom) - y;
        for (int i = 0; i < 3; i++) {
            st_plot_axes *a = &p[i].ax;
            a->box.x = (int)lround(left + i * (w + gap));
            a->box.y = y;
            a->box.w = w;
            a->box.h = h;
            a->xmin = p[i].xmin;
            a->xmax = p[i].xmax;
            a->ymin = p[i].ymin;
            a->ymax = p[i].ymax;
        }
        if (iter > 0 && w == (int)bw && h == (int)bh)
            break;
        bw = w;
        bh = h;
    }
    return 0;
}

int st_plot_comparison_layout(int epochs, const double *const costs[3],
                              const double *const times[3], const double acc[3],
                              st_plot_axes axes[3], st_error *err)
{
    canvas cv;
    if (canvas_open(&cv, "comparison", ST_PLOT_PNG, 1, 1, 1, err) != 0)
        return -1;
    panel p[3];
    int rc = comparison_setup(&cv, epochs, costs, times, acc, p, err);
    if (rc == 0)
        for (int i = 0; i < 3; i++)
            axes[i] = p[i].ax;
    canvas_free(&cv);
    return rc;
}

/* ================================================================ comparison: drawing */

static double map_x(const st_plot_axes *a, double x)
{
    return a->box.x + (x - a->xmin) / (a->xmax - a->xmin) * a->box.w;
}

static double map_y(const st_plot_axes *a, double y)
{
    return a->box.y + a->box.h - (y - a->ymin) / (a->ymax - a->ymin) * a->box.h;
}

static void clip_to_box(cairo_t *cr, const st_plot_axes *a)
{
    cairo_rectangle(cr, a->box.x, a->box.y, a->box.w, a->box.h);
    cairo_clip(cr);
}

/* Grid lines at the ticks: #b0b0b0, 0.8 pt, alpha 0.3, under the lines and over the bars. */
static void draw_grid(canvas *cv, const panel *p)
{
    cairo_t *cr = cv->cr;
    const st_plot_axes *a = &p->ax;
    cairo_save(cr);
    clip_to_box(cr, a);
    set_rgb(cr, 0xb0b0b0, 0.3);
    cairo_set_line_width(cr, 0.8 * PT);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    if (!p->bars)
        for (int i = 0; i < p->xt.n; i++) {
            double x = snap(map_x(a, p->xt.v[i]));
            cairo_move_to(cr, x, a->box.y);
            cairo_line_to(cr, x, a->box.y + a->box.h);
            cairo_stroke(cr);
        }
    for (int i = 0; i < p->yt.n; i++) {
        double y = snap(map_y(a, p->yt.v[i]));
        cairo_move_to(cr, a->box.x, y);
        cairo_line_to(cr, a->box.x + a->box.w, y);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
}

/* Marker shapes of "o-", "s-", "^-" with markersize ms (pixels): a circle of diameter ms, a
 * square of side ms, a triangle ms wide and ms tall, centred on (x, y). */
static void marker_path(cairo_t *cr, int kind, double x, double y, double ms)
{
    double r = ms / 2;
    if (kind == 0) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, x, y, r, 0, 2 * M_PI);
        cairo_close_path(cr);
    } else if (kind == 1) {
        cairo_rectangle(cr, x - r, y - r, ms, ms);
    } else {
        cairo_move_to(cr, x, y - r);
        cairo_line_to(cr, x - r, y + r);
        cairo_line_to(cr, x + r, y + r);
        cairo_close_path(cr);
    }
}

#define LINE_WIDTH (1.5 * PT)
#define MARKER_SIZE (3 * PT)
#define MARKER_EDGE (1.0 * PT)

/* Fills and outlines a marker in colour rgb (matplotlib's markers have a 1 pt edge of the line
 * colour). */
static void draw_marker(cairo_t *cr, int kind, double x, double y, unsigned rgb)
{
    marker_path(cr, kind, x, y, MARKER_SIZE);
    set_rgb(cr, rgb, 1);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, MARKER_EDGE);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
    cairo_stroke(cr);
}

static void draw_lines(canvas *cv, const panel *p)
{
    cairo_t *cr = cv->cr;
    const st_plot_axes *a = &p->ax;
    cairo_save(cr);
    clip_to_box(cr, a);
    for (int m = 0; m < 3; m++) {
        set_rgb(cr, line_colors[m], 1);
        cairo_set_line_width(cr, LINE_WIDTH);
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
        for (int e = 0; e < p->n; e++) {
            double x = map_x(a, e + 1), y = map_y(a, p->series[m][e]);
            if (e == 0)
                cairo_move_to(cr, x, y);
            else
                cairo_line_to(cr, x, y);
        }
        if (p->n > 1)
            cairo_stroke(cr);
        cairo_new_path(cr);
        for (int e = 0; e < p->n; e++)
            draw_marker(cr, m, map_x(a, e + 1), map_y(a, p->series[m][e]), line_colors[m]);
    }
    cairo_restore(cr);
}

/* Bars 0.8 wide at x = 0, 1, 2 from 0 to the accuracy, clipped by the axes, with a 0.5 pt black
 * edge; the sides are put on whole pixels (matplotlib snaps bars too). */
static void draw_bars(canvas *cv, const panel *p, const double acc[3])
{
    cairo_t *cr = cv->cr;
    const st_plot_axes *a = &p->ax;
    cairo_save(cr);
    clip_to_box(cr, a);
    for (int i = 0; i < 3; i++) {
        double x0 = round(map_x(a, i - 0.4)), x1 = round(map_x(a, i + 0.4));
        double y0 = round(map_y(a, acc[i])), y1 = a->box.y + a->box.h + 2 * PT;
        cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
        set_rgb(cr, bar_colors[i], 1);
        cairo_fill_preserve(cr);
        set_rgb(cr, 0, 1);
        cairo_set_line_width(cr, 0.5 * PT);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
}

/* The value of each bar in bold, its baseline 0.5 above the bar (matplotlib's text(i, acc + 0.5,
 * ..., ha="center")); for a bar under the axes' bottom, above the bottom; for one so close to the
 * top that the label would stick out of the axes into the title, just inside the bar's top. */
static void draw_bar_labels(canvas *cv, const panel *p, const double acc[3])
{
    const st_plot_axes *a = &p->ax;
    for (int i = 0; i < 3; i++) {
        char s[32];
        snprintf(s, sizeof s, "%.1f%%", acc[i]);
        double v = acc[i] < a->ymin ? a->ymin : acc[i];
        double base = map_y(a, v + 0.5);
        if (base - ASCENT_EM * FS < a->box.y)
            draw_text(cv, s, FONT_PT, 1, map_x(a, i), map_y(a, v) + 0.5 * FS, HA_CENTER, VA_TOP,
                      0);
        else
            draw_text(cv, s, FONT_PT, 1, map_x(a, i), base, HA_CENTER, VA_BASELINE, 0);
    }
}

/* Spines (0.8 pt, on the pixels just outside the box), ticks, tick labels, axis labels, title. */
static void draw_frame(canvas *cv, const panel *p)
{
    cairo_t *cr = cv->cr;
    const st_plot_axes *a = &p->ax;
    const st_plot_rect *b = &a->box;
    double l = b->x - 0.5, r = b->x + b->w + 0.5, t = b->y - 0.5, bt = b->y + b->h + 0.5;
    set_rgb(cr, 0, 1);
    cairo_set_line_width(cr, 0.8 * PT);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
    cairo_rectangle(cr, l, t, r - l, bt - t);
    cairo_stroke(cr);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    for (int i = 0; i < p->xt.n; i++) {
        double x = snap(map_x(a, p->xt.v[i]));
        cairo_move_to(cr, x, bt);
        cairo_line_to(cr, x, bt + TICK_LEN);
        cairo_stroke(cr);
        draw_text(cv, p->xt.label[i], FONT_PT, 0, map_x(a, p->xt.v[i]), bt + TICK_LEN + TICK_PAD,
                  HA_CENTER, VA_TOP, 0);
    }
    double ytl_left = l;
    for (int i = 0; i < p->yt.n; i++) {
        double y = snap(map_y(a, p->yt.v[i]));
        cairo_move_to(cr, l, y);
        cairo_line_to(cr, l - TICK_LEN, y);
        cairo_stroke(cr);
        double x = l - TICK_LEN - TICK_PAD;
        draw_text(cv, p->yt.label[i], FONT_PT, 0, x, map_y(a, p->yt.v[i]), HA_RIGHT,
                  VA_CENTER_BASELINE, 0);
        ytl_left = fmin(ytl_left, x - measure_text(cv, p->yt.label[i], FONT_PT, 0).w);
    }
    double cx = b->x + b->w / 2.0, cy = b->y + b->h / 2.0;
    if (p->xlabel) {
        double h = 0;
        for (int i = 0; i < p->xt.n; i++)
            h = fmax(h, measure_text(cv, p->xt.label[i], FONT_PT, 0).h);
        draw_text(cv, p->xlabel, FONT_PT, 0, cx, bt + TICK_LEN + TICK_PAD + h + LABEL_PAD,
                  HA_CENTER, VA_TOP, 0);
    }
    draw_text(cv, p->ylabel, FONT_PT, 0, ytl_left - LABEL_PAD, cy, HA_CENTER, VA_BOTTOM, -M_PI / 2);
    draw_text(cv, p->title, TITLE_PT, 0, cx, b->y - TITLE_PAD, HA_CENTER, VA_BASELINE, 0);
}

/* Does the segment (x0,y0)-(x1,y1) meet the rectangle [l, r] x [t, b]? (Liang-Barsky) */
static int segment_hits_rect(double x0, double y0, double x1, double y1, double l, double t,
                             double r, double b)
{
    double dx = x1 - x0, dy = y1 - y0, u0 = 0, u1 = 1;
    const double pq[4][2] = {{-dx, x0 - l}, {dx, r - x0}, {-dy, y0 - t}, {dy, b - y0}};
    for (int i = 0; i < 4; i++) {
        double pp = pq[i][0], q = pq[i][1];
        if (pp == 0) {
            if (q < 0)
                return 0;
        } else {
            double u = q / pp;
            if (pp < 0)
                u0 = fmax(u0, u);
            else
                u1 = fmin(u1, u);
            if (u0 > u1)
                return 0;
        }
    }
    return 1;
}

/* The legend (matplotlib's defaults at 10 pt): border pad 0.4, label spacing 0.5, handle length
 * 2, handle-text pad 0.8, 0.5 from the axes, all in font sizes; a white frame at alpha 0.8 with a
 * 0.8-gray edge and rounded corners. Placed like loc="best": of matplotlib's nine candidate
 * places (upper right, upper left, lower left, lower right, right, center left, lower center,
 * upper center, center), the first with the fewest data points inside plus lines crossing it. */
static void draw_legend(canvas *cv, const panel *p)
{
    cairo_t *cr = cv->cr;
    const st_plot_axes *a = &p->ax;
    const double bp = 0.4 * FS, ls = 0.5 * FS, hl = 2.0 * FS, htp = 0.8 * FS, bap = 0.5 * FS;
    double tw = 0, th = 0;
    for (int m = 0; m < 3; m++) {
        text_box tb = measure_text(cv, model_names[m], FONT_PT, 0);
        tw = fmax(tw, tb.w);
        th = fmax(th, tb.h);
    }
    double w = 2 * bp + hl + htp + tw, h = 2 * bp + 3 * th + 2 * ls;
    double L = a->box.x + bap, R = a->box.x + a->box.w - bap - w;
    double T = a->box.y + bap, B = a->box.y + a->box.h - bap - h;
    double CX = a->box.x + (a->box.w - w) / 2, CY = a->box.y + (a->box.h - h) / 2;
    const double cand[9][2] = {{R, T}, {L, T}, {L, B}, {R, B}, {R, CY},
                               {L, CY}, {CX, B}, {CX, T}, {CX, CY}};
    int best = 0, best_bad = -1;
    for (int c = 0; c < 9 && best_bad != 0; c++) {
        double l = cand[c][0], t = cand[c][1], r = l + w, b = t + h;
        int bad = 0;
        for (int m = 0; m < 3; m++) {
            int crosses = 0;
            for (int e = 0; e < p->n; e++) {
                double x = map_x(a, e + 1), y = map_y(a, p->series[m][e]);
                bad += x >= l && x <= r && y >= t && y <= b;
                if (e > 0 && !crosses)
                    crosses = segment_hits_rect(map_x(a, e), map_y(a, p->series[m][e - 1]), x, y,
                                                l, t, r, b);
            }
            bad += crosses;
        }
        if (best_bad < 0 || bad < best_bad) {
            best_bad = bad;
            best = c;
        }
    }
    double x = round(cand[best][0]), y = round(cand[best][1]);

    /* Frame: rounded rectangle, radius 0.2 font sizes. */
    double rad = 0.2 * FS, l = x + 0.5, t = y + 0.5, r = x + round(w) - 0.5, b = y + round(h) - 0.5;
    cairo_new_sub_path(cr);
    cairo_arc(cr, r - rad, t + rad, rad, -M_PI / 2, 0);
    cairo_arc(cr, r - rad, b - rad, rad, 0, M_PI / 2);
    cairo_arc(cr, l + rad, b - rad, rad, M_PI / 2, M_PI);
    cairo_arc(cr, l + rad, t + rad, rad, M_PI, 3 * M_PI / 2);
    cairo_close_path(cr);
    set_rgb(cr, 0xffffff, 0.8);
    cairo_fill_preserve(cr);
    set_rgb(cr, 0xcccccc, 1);
    cairo_set_line_width(cr, 1.0 * PT);
    cairo_stroke(cr);

    /* Each row is a text box tall; the handle (line and marker) is 0.35 font sizes above the
     * text's baseline, the middle of matplotlib's 0.7-font-size handle box. */
    for (int m = 0; m < 3; m++) {
        double base = y + bp + m * (th + ls) + ASCENT_EM * FS, cy = base - 0.35 * FS;
        double hx = x + bp;
        set_rgb(cr, line_colors[m], 1);
        cairo_set_line_width(cr, LINE_WIDTH);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
        cairo_move_to(cr, hx, cy);
        cairo_line_to(cr, hx + hl, cy);
        cairo_stroke(cr);
        draw_marker(cr, m, hx + hl / 2, cy, line_colors[m]);
        draw_text(cv, model_names[m], FONT_PT, 0, hx + hl + htp, base, HA_LEFT, VA_BASELINE, 0);
    }
}

int st_plot_comparison(const char *path, st_plot_format fmt, int epochs,
                       const double *const costs[3], const double *const times[3],
                       const double acc[3], st_error *err)
{
    if (!path)
        return st_seterr(err, "comparison: no output path");
    canvas cv;
    if (canvas_open(&cv, path, fmt, ST_PLOT_COMPARISON_WIDTH, ST_PLOT_COMPARISON_HEIGHT, 0,
                    err) != 0)
        return -1;
    panel p[3];
    if (comparison_setup(&cv, epochs, costs, times, acc, p, err) != 0) {
        canvas_free(&cv);
        return -1;
    }
    /* matplotlib's z-order: bars (1), grid (1.5), lines (2), spines (2.5), text (3), legend (5) */
    draw_bars(&cv, &p[2], acc);
    for (int i = 0; i < 3; i++)
        draw_grid(&cv, &p[i]);
    for (int i = 0; i < 2; i++)
        draw_lines(&cv, &p[i]);
    for (int i = 0; i < 3; i++)
        draw_frame(&cv, &p[i]);
    draw_bar_labels(&cv, &p[2], acc);
    for (int i = 0; i < 2; i++)
        draw_legend(&cv, &p[i]);
    int rc = canvas_save(&cv, err);
    canvas_free(&cv);
    return rc;
}
