// Plots of `runner report`, drawn by gnuplot (Debian: gnuplot-nox) as SVG: the points go to data files and a
// script in a temporary folder, gnuplot runs as a child process, and the SVG it writes is read back.
#pragma once

#include <string>

#include "app/report_model.h"

namespace mmr {

// The plot as an SVG document. Throws Error with gnuplot's own message when it fails, or saying which package to
// install when gnuplot is not on PATH; a plot without a single point is an Error too (gnuplot would refuse it).
std::string plot_svg(const ReportPlot& plot, int width = 800, int height = 450);

// The same SVG as an element to put inside HTML: the XML prolog dropped and every id (and reference to one)
// prefixed with `id_prefix`, since each gnuplot SVG defines the same ids and one page holds several.
std::string inline_svg(const std::string& svg, const std::string& id_prefix);

}  // namespace mmr
