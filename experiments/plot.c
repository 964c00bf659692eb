/* plot.c: line charts as SVG text (plot.h). */
#include "experiments/plot.h"

#include <math.h>
#include <string.h>

#define PW 460.0 /* panel width and height */
#define PH 340.0
#define ML 70.0  /* margins inside a panel */
#define MR 20.0
#define MT 40.0
#define MB 50.0

static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static void xml_text(FILE *f, const char *s) {
  for (; s && *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else
      fputc(*s, f);
  }
}

static void fmt_tick(double v, char *buf, size_t cap) {
  if (v >= 1e6 && fmod(v, 1e6) == 0)
    snprintf(buf, cap, "%gM", v / 1e6);
  else if (v >= 1e4 && fmod(v, 1e3) == 0)
    snprintf(buf, cap, "%gk", v / 1e3);
  else
    snprintf(buf, cap, "%g", v);
}

static void panel(FILE *f, double ox, const mb_plot_panel *p) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (int s = 0; s < p->nseries; s++)
    for (int i = 0; i < p->series[s].n; i++) {
      double x = p->series[s].x[i], y = p->series[s].y[i];
      if (!(x > 0) || !isfinite(y) || (p->log_y && !(y > 0)))
        continue;
      xmin = fmin(xmin, x);
      xmax = fmax(xmax, x);
      ymin = fmin(ymin, y);
      ymax = fmax(ymax, y);
    }
  if (!isfinite(xmin)) {
    xmin = 1;
    xmax = 2;
    ymin = 1;
    ymax = 10;
  }
  /* axes: log2 x over whole powers; y log10 over whole decades, or linear from 0 */
  double lx0 = floor(log2(xmin)), lx1 = ceil(log2(xmax));
  if (lx1 <= lx0)
    lx1 = lx0 + 1;
  double y0, y1;
  if (p->log_y) {
    y0 = floor(log10(ymin));
    y1 = ceil(log10(ymax));
    if (y1 <= y0)
      y1 = y0 + 1;
  } else {
    y0 = 0;
    double mag = pow(10, floor(log10(ymax > 0 ? ymax : 1)));
    y1 = ceil(ymax / mag) * mag;
    if (y1 <= 0)
      y1 = 1;
  }
  const double w = PW - ML - MR, h = PH - MT - MB;
#define XP(x) (ox + ML + (log2(x) - lx0) / (lx1 - lx0) * w)
#define YP(y) (MT + h - ((p->log_y ? log10(y) : (y)) - y0) / (y1 - y0) * h)
  fprintf(f, "<g font-family=\"sans-serif\" font-size=\"12\">\n");
  fprintf(f, "<text x=\"%.1f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">", ox + PW / 2);
  xml_text(f, p->title);
  fprintf(f, "</text>\n");
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", ox + ML,
          MT, w, h);
  char buf[32];
  for (double e = lx0; e <= lx1 + 1e-9; e++) {
    double x = XP(pow(2, e));
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x, MT, x, MT + h);
    fmt_tick(pow(2, e), buf, sizeof buf);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, MT + h + 16, buf);
  }
  int nt = p->log_y ? (int)(y1 - y0) : 5;
  for (int k = 0; k <= nt; k++) {
    double yv = p->log_y ? pow(10, y0 + k) : y0 + (y1 - y0) * k / nt;
    double y = YP(yv);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", ox + ML, y, ox + ML + w, y);
    fmt_tick(yv, buf, sizeof buf);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ox + ML - 6, y + 4, buf);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ox + ML + w / 2, PH - 12);
  xml_text(f, p->xlabel);
  fprintf(f, "</text>\n<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">", ox + 16,
          MT + h / 2);
  xml_text(f, p->ylabel);
  fprintf(f, "</text>\n");
  for (int s = 0; s < p->nseries; s++) {
    const mb_plot_series *se = &p->series[s];
    const char *col = COLORS[s % 8];
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
    for (int i = 0; i < se->n; i++)
      if (se->x[i] > 0 && isfinite(se->y[i]) && (!p->log_y || se->y[i] > 0))
        fprintf(f, "%.1f,%.1f ", XP(se->x[i]), YP(se->y[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < se->n; i++)
      if (se->x[i] > 0 && isfinite(se->y[i]) && (!p->log_y || se->y[i] > 0))
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s: %g, %.4g</title></circle>\n",
                XP(se->x[i]), YP(se->y[i]), col, se->name, se->x[i], se->y[i]);
    /* legend, top right inside the frame */
    double ly = MT + 16 + 18 * s;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            ox + ML + w - 150, ly - 4, ox + ML + w - 130, ly - 4, col);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", ox + ML + w - 125, ly);
    xml_text(f, se->name);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "</g>\n");
#undef XP
#undef YP
}

void mb_plot_svg(FILE *f, const char *title, const mb_plot_panel *panels, int npanels) {
  double W = PW * npanels, H = PH + 30;
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
          "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
          W, H, W, H);
  fprintf(f, "<g transform=\"translate(0,30)\">\n");
  for (int i = 0; i < npanels; i++)
    panel(f, PW * i, &panels[i]);
  fprintf(f, "</g>\n<text x=\"%.1f\" y=\"20\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"15\">",
          W / 2);
  xml_text(f, title);
  fprintf(f, "</text>\n</svg>\n");
}
