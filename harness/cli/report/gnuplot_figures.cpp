#include "gnuplot_figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/support/diagnostics.h"

namespace lory::cli {

namespace {

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void run_gnuplot(const std::string& script_path) {
  const std::string command = fmt::format("gnuplot '{}' 2>&1", script_path);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw UserError("cannot run gnuplot (install gnuplot-nox: scripts/setup-deps)");
  std::string output;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = pclose(pipe);
  if (status != 0) {
    throw UserError(
        fmt::format("gnuplot failed on '{}' (is gnuplot-nox installed? scripts/setup-deps): {}",
                    script_path, output));
  }
}

}  // namespace

void line_plot(const std::string& png_path, const std::string& title, const std::string& x_label,
               const std::string& y_label, const std::vector<Series>& series, double y_max) {
  const std::string base = png_path.substr(0, png_path.size() - 4);
  std::ofstream data(base + ".dat");
  for (const Series& s : series) {
    data << "# " << s.name << "\n";
    for (const auto& [x, y] : s.points) data << fmt::format("{} {}\n", x, y);
    data << "\n\n";
  }
  data.close();
  std::ofstream script(base + ".gp");
  // noenhanced: labels hold underscores (code_python), which enhanced text would subscript.
  script << "set terminal pngcairo size 1000,600 font \"sans,11\" noenhanced\n"
         << "set output " << quoted(png_path) << "\n"
         << "set title " << quoted(title) << "\n"
         << "set xlabel " << quoted(x_label) << "\nset ylabel " << quoted(y_label) << "\n"
         << "set key outside right top\nset grid\n"
         // 200k, 1M rather than 200000 running into 300000.
         << "set format x \"%.1s%c\"\n"
         << (y_max > 0 ? fmt::format("set yrange [0:{}]\n", y_max) : "") << "plot ";
  for (size_t i = 0; i < series.size(); ++i) {
    script << (i ? ", \\\n     " : "") << quoted(base + ".dat") << " index " << i
           << " using 1:2 with lines lw 2 title " << quoted(series[i].name);
  }
  script << "\n";
  script.close();
  run_gnuplot(base + ".gp");
}

void band_plot(const std::string& png_path, const std::string& title, const std::string& x_label,
               const std::string& y_label, const std::vector<BandSeries>& series,
               const BandPlotOptions& options) {
  const std::string base = png_path.substr(0, png_path.size() - 4);
  std::ofstream data(base + ".dat");
  for (const BandSeries& s : series) {
    data << "# " << s.name << ": x mean std\n";
    for (const BandPoint& p : s.points) {
      data << fmt::format("{} {} {}\n", p.x, p.mean, std::isfinite(p.std) ? p.std : 0.0);
    }
    data << "\n\n";
  }
  data.close();
  std::ofstream script(base + ".gp");
  const size_t legend_rows = (series.size() + 1) / 2;
  script << "set terminal pngcairo size 1000," << 560 + 20 * legend_rows
         << " font \"sans,11\" noenhanced\n"
         << "set output " << quoted(png_path) << "\n"
         << "set title " << quoted(title) << "\n"
         << "set xlabel " << quoted(x_label) << "\nset ylabel " << quoted(y_label)
         << "\n"
         // Below the plot, in columns: however many cells, the legend never covers a curve.
         << "set key below horizontal maxcols 3\nset grid\n";
  if (options.log2_x) {
    script << "set logscale x 2\nset xtics (";
    std::vector<double> xs;
    for (const BandSeries& s : series) {
      for (const BandPoint& p : s.points) {
        if (std::find(xs.begin(), xs.end(), p.x) == xs.end()) xs.push_back(p.x);
      }
    }
    std::sort(xs.begin(), xs.end());
    for (size_t i = 0; i < xs.size(); ++i)
      script << (i ? ", " : "") << fmt::format("\"{}\" {}", xs[i], xs[i]);
    script << ")\nset offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n";
  } else {
    script << "set format x \"%.1s%c\"\n";  // 200k, 1M
  }
  if (options.zero_line) script << "set xzeroaxis lt -1 lw 1\n";
  script << "plot ";
  for (size_t i = 0; i < series.size(); ++i) {
    const std::string source = quoted(base + ".dat") + " index " + std::to_string(i);
    // gnuplot cycles through 8 colours: the dash pattern tells apart series 9 on.
    const std::string colour =
        " lc " + std::to_string(i % 8 + 1) + " dt " + std::to_string(i / 8 + 1);
    script << (i ? ", \\\n     " : "");
    if (options.style == BandStyle::Band) {
      script << source << " using 1:($2-$3):($2+$3) with filledcurves fs transparent solid 0.2"
             << colour << " notitle, \\\n     " << source
             << " using 1:2 with linespoints lw 2 pt 7 ps 0.6" << colour << " title "
             << quoted(series[i].name);
    } else {
      script << source << " using 1:2:3 with yerrorlines lw 2 pt 7" << colour << " title "
             << quoted(series[i].name);
    }
  }
  script << "\n";
  script.close();
  run_gnuplot(base + ".gp");
}

void heatmap(const std::string& png_path, const std::string& title,
             const std::vector<std::string>& row_labels,
             const std::vector<std::string>& column_labels,
             const std::vector<std::vector<double>>& values, const std::string& value_label,
             double colour_max) {
  const std::string base = png_path.substr(0, png_path.size() - 4);
  std::ofstream data(base + ".dat");
  for (size_t r = 0; r < values.size(); ++r) {
    for (size_t c = 0; c < values[r].size(); ++c)
      data << fmt::format("{} {} {}\n", c, r, values[r][c]);
    data << "\n";
  }
  data.close();
  std::ofstream script(base + ".gp");
  const size_t width = 300 + 40 * column_labels.size(), height = 160 + 40 * row_labels.size();
  script << "set terminal pngcairo size " << width << "," << height
         << " font \"sans,10\" noenhanced\n"
         << "set output " << quoted(png_path) << "\n"
         << "set title " << quoted(title) << "\n"
         << "set xlabel \"expert\"\nset cblabel " << quoted(value_label) << "\n"
         << "set palette defined (0 \"white\", 1 \"#fdd49e\", 2 \"#ef6548\", 3 \"#7f0000\")\n"
         << "set cbrange [0:" << (colour_max > 0 ? fmt::format("{}", colour_max) : std::string("*"))
         << "]\nset view map\nset size ratio -1\n"
         << "set xrange [-0.5:" << column_labels.size() - 0.5
         << "]\nset yrange [-0.5:" << row_labels.size() - 0.5 << "] reverse\nset xtics (";
  for (size_t c = 0; c < column_labels.size(); ++c)
    script << (c ? ", " : "") << quoted(column_labels[c]) << " " << c;
  script << ")\nset ytics (";
  for (size_t r = 0; r < row_labels.size(); ++r)
    script << (r ? ", " : "") << quoted(row_labels[r]) << " " << r;
  script << ")\nplot " << quoted(base + ".dat") << " using 1:2:3 with image notitle\n";
  script.close();
  run_gnuplot(base + ".gp");
}

}  // namespace lory::cli
