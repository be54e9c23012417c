// PNG figures drawn by gnuplot (Debian's gnuplot-nox, pngcairo terminal): the data and the script
// of every figure are written next to it, so a figure can be restyled by hand.
#pragma once

#include <string>
#include <vector>

namespace lory::cli {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

// Throws UserError when gnuplot is missing or fails.
// y_max > 0 fixes the y range to [0, y_max] (counts with a known ceiling).
void line_plot(const std::string& png_path, const std::string& title, const std::string& x_label,
               const std::string& y_label, const std::vector<Series>& series, double y_max = 0);

// A series summarised over seeds: at each x the mean and the sample standard deviation (NAN or
// 0 when one seed: no band).
struct BandPoint {
  double x = 0, mean = 0, std = 0;
};
struct BandSeries {
  std::string name;
  std::vector<BandPoint> points;
};

enum class BandStyle {
  Band,       // a line through the means in a shaded band of +- one std (curves against tokens)
  ErrorBars,  // points joined by lines with +- one std error bars (a few x values, e.g. experts)
};

struct BandPlotOptions {
  BandStyle style = BandStyle::Band;
  bool log2_x = false;     // x on a log2 scale (expert counts)
  bool zero_line = false;  // a horizontal line at y = 0 (gains: above it the MoE is better)
};

// Throws UserError when gnuplot is missing or fails.
void band_plot(const std::string& png_path, const std::string& title, const std::string& x_label,
               const std::string& y_label, const std::vector<BandSeries>& series,
               const BandPlotOptions& options = {});

// values[row][column]; rows are labelled by row_labels (y axis), columns by column_labels.
// colour_max > 0 fixes the colour scale to [0, colour_max] (one scale for several heatmaps).
void heatmap(const std::string& png_path, const std::string& title,
             const std::vector<std::string>& row_labels,
             const std::vector<std::string>& column_labels,
             const std::vector<std::vector<double>>& values, const std::string& value_label,
             double colour_max = 0);

}  // namespace lory::cli
