/* plot.h: a line chart as hand-written SVG (it is text): series of (x, y)
 * points on log2 x and log10 y axes, with ticks, grid, markers and a
 * legend. Used by the sequence-length sweep (throughput and peak memory
 * against max_length); no plotting library needed. */
#ifndef MB_EXPERIMENTS_PLOT_H
#define MB_EXPERIMENTS_PLOT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MB_PLOT_MAX_POINTS 64

typedef struct {
  const char *name;
  int n;
  double x[MB_PLOT_MAX_POINTS], y[MB_PLOT_MAX_POINTS];
} mb_plot_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  int log_y; /* 1: log10 y axis */
  int nseries;
  const mb_plot_series *series;
} mb_plot_panel;

/* Panels side by side in one SVG document written to f. */
void mb_plot_svg(FILE *f, const char *title, const mb_plot_panel *panels, int npanels);

#ifdef __cplusplus
}
#endif
#endif
