// A curve summarised over the seeds of one cell, for the report's figures.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "cli/report/gnuplot_figures.h"

namespace lory::cli {

// Values collected over seeds at each x, summarised as mean and sample standard deviation.
class SeedSummary {
 public:
  void add(double x, double y) { values_[x].push_back(y); }
  bool empty() const { return values_.empty(); }

  // Only the x values every seed reached (the largest count at any x), so that the last points
  // are not the mean of fewer seeds than the others.
  std::vector<BandPoint> points() const {
    const size_t every_seed = seeds();
    std::vector<BandPoint> out;
    for (const auto& [x, ys] : values_) {
      if (ys.size() != every_seed) continue;
      double mean = 0;
      for (double y : ys) mean += y;
      mean /= static_cast<double>(ys.size());
      double squares = 0;
      for (double y : ys) squares += (y - mean) * (y - mean);
      const double std =
          ys.size() >= 2 ? std::sqrt(squares / static_cast<double>(ys.size() - 1)) : NAN;
      out.push_back({x, mean, std});
    }
    return out;
  }

  // The most values at any x: the number of seeds that contributed.
  size_t seeds() const {
    size_t seeds = 0;
    for (const auto& [x, ys] : values_) seeds = std::max(seeds, ys.size());
    return seeds;
  }

 private:
  std::map<double, std::vector<double>> values_;
};

}  // namespace lory::cli
