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

// values[row][column]; rows are labelled by row_labels (y axis), columns by column_labels.
// colour_max > 0 fixes the colour scale to [0, colour_max] (one scale for several heatmaps).
void heatmap(const std::string& png_path, const std::string& title,
             const std::vector<std::string>& row_labels,
             const std::vector<std::string>& column_labels,
             const std::vector<std::vector<double>>& values, const std::string& value_label,
             double colour_max = 0);

}  // namespace lory::cli
