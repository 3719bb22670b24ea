/* plot.h - the tutorial's two figures, drawn with cairo and pango as PNG, SVG or PDF.
 *
 * The figures reproduce what the notebook's matplotlib code draws (white background, DejaVu Sans,
 * matplotlib's default sizes at 100 dpi, the tab10 colour cycle, tight layout):
 *
 *  - Feature maps (st_plot_featuremaps): 16 x 8 inches, 1600 x 800 pixels as PNG. A 4 x 8 grid:
 *    the input image in gray at the top left (titled "Original"), the rest of the first row
 *    empty; then one row each for the first 8 channels of block 1 (14x14), block 2 (7x7) and
 *    block 3 (7x7) in matplotlib's viridis colour map, each map scaled to its own min..max, with
 *    the block's name and size at the left of the row. Title "Feature Maps - input: <class>".
 *    Every map pixel is drawn as a crisp square of whole pixels (no smoothing, no seams).
 *
 *  - Comparison (st_plot_comparison): 18 x 5 inches, 1800 x 500 pixels as PNG. Three panels:
 *    training cost per epoch and training time per epoch (one line with markers per model,
 *    legend in the corner that hides the fewest data, like matplotlib's loc="best"), and a bar
 *    chart of the test accuracies with y from 70 to 100 and each value written above its bar.
 *    The models are always in the order FC 1-Layer, FC Multi-Layer, CNN (3-Block).
 *
 * Geometry is given in PNG pixels (x to the right, y down from the top-left corner). SVG and PDF
 * files have the same drawing at 72 points per inch (1152 x 576 pt and 1296 x 360 pt).
 *
 * Files are written atomically: the figure is rendered in memory, written to "<path>.tmp.XXXXXX"
 * in the same directory and renamed over path; on failure no file is left behind. The output is
 * byte-for-byte reproducible (no dates in PDF or SVG files).
 *
 * Any text that a character of could not be drawn with an installed font (DejaVu Sans, with a
 * fontconfig fallback such as Nanum Gothic for Hangul) makes the function fail with an error
 * naming the text, instead of writing a figure with empty boxes in it. */
#ifndef STRIDE_PLOT_H
#define STRIDE_PLOT_H

#include "stride.h"

typedef enum st_plot_format { ST_PLOT_PNG = 0, ST_PLOT_SVG, ST_PLOT_PDF } st_plot_format;

/* The figures' sizes in PNG pixels (100 dpi). */
#define ST_PLOT_FEATUREMAPS_WIDTH 1600
#define ST_PLOT_FEATUREMAPS_HEIGHT 800
#define ST_PLOT_COMPARISON_WIDTH 1800
#define ST_PLOT_COMPARISON_HEIGHT 500

/* The feature-map figure: the input image is ST_PLOT_IMAGE_SIZE x ST_PLOT_IMAGE_SIZE, and rows
 * 1..3 show the first ST_PLOT_MAP_COLUMNS channels of each block. Every cell is a square of
 * ST_PLOT_CELL_SIZE pixels (168 = 28 * 6 = 14 * 12 = 7 * 24, so those sizes fill it exactly). */
#define ST_PLOT_IMAGE_SIZE 28
#define ST_PLOT_MAP_ROWS 3
#define ST_PLOT_MAP_COLUMNS 8
#define ST_PLOT_CELL_SIZE 168

/* A rectangle of whole PNG pixels: columns x .. x+w-1, rows y .. y+h-1. */
typedef struct st_plot_rect {
    int x, y, w, h;
} st_plot_rect;

/* One panel of the comparison figure: the data area inside the spines (the spines are drawn on
 * the pixels just outside it) and the data limits that map to its edges: x = xmin at box.x,
 * x = xmax at box.x + box.w, y = ymin at box.y + box.h (the bottom), y = ymax at box.y. For the
 * bar chart the categories are x = 0, 1, 2 and ymin, ymax are 70, 100. */
typedef struct st_plot_axes {
    st_plot_rect box;
    double xmin, xmax, ymin, ymax;
} st_plot_axes;

/* The format named by path's extension, ".png", ".svg" or ".pdf" (any case); -1 for any other. */
int st_plot_format_from_path(const char *path, st_plot_format *fmt, st_error *err);
/* "png", "svg" or "pdf". */
const char *st_plot_format_name(st_plot_format fmt);

/* Draws the feature-map figure into path.
 *   image       ST_PLOT_IMAGE_SIZE^2 floats, the input image (row-major; shown in gray scaled
 *               to its own min..max, as imshow does)
 *   class_name  the input's class, for the title (UTF-8)
 *   maps[b]     block b+1's output for this image: at least 8 channels of sizes[b] x sizes[b]
 *               floats, channel-major (C x H x W); only channels 0..7 are read
 *   sizes[b]    the maps' side, 1 .. ST_PLOT_CELL_SIZE (the tutorial's are 14, 7, 7)
 * Values that are not finite are left blank (white), as matplotlib does. */
int st_plot_featuremaps(const char *path, st_plot_format fmt, const float *image,
                        const char *class_name, const float *const maps[3], const int sizes[3],
                        st_error *err);

/* Where a map of side `size` is drawn in the feature-map figure: cell (row, col) with row 0 the
 * input image (col 0 only, size ST_PLOT_IMAGE_SIZE) and rows 1..3 the blocks, col 0..7. The
 * rectangle is the largest multiple of size that fits in ST_PLOT_CELL_SIZE, centred in the cell,
 * so each map pixel is a square of rect.w / size screen pixels. -1 on a bad row, col or size. */
int st_plot_featuremap_cell(int row, int col, int size, st_plot_rect *rect, st_error *err);

/* The viridis index (0..255) of v in a map whose values run from lo to hi, as matplotlib's
 * Normalize + colour map compute it: floor((v - lo) / (hi - lo) * 256) clamped to 0..255, and 0
 * when hi <= lo (a constant map). The gray image uses the same index into st_gray(). */
int st_plot_colormap_index(float v, float lo, float hi);
/* matplotlib's colour maps as bytes: viridis, 256 x (R, G, B); gray, 256 levels. */
const unsigned char *st_viridis(void);
const unsigned char *st_gray(void);

/* Draws the comparison figure into path. epochs >= 1 values per model, in the order FC 1-Layer,
 * FC Multi-Layer, CNN (3-Block): costs[m][e] is model m's average cost in epoch e + 1, times[m][e]
 * its training time in seconds; acc[m] its test accuracy in percent. All values must be finite.
 * An accuracy outside 70..100 is clipped by the axes, but its label is still shown (at the edge). */
int st_plot_comparison(const char *path, st_plot_format fmt, int epochs,
                       const double *const costs[3], const double *const times[3],
                       const double acc[3], st_error *err);

/* The three panels' geometry in the figure st_plot_comparison draws for the same data (the
 * layout adapts its margins to the tick labels): axes[0] cost, axes[1] time, axes[2] accuracy. */
int st_plot_comparison_layout(int epochs, const double *const costs[3],
                              const double *const times[3], const double acc[3],
                              st_plot_axes axes[3], st_error *err);

#endif
