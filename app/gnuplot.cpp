// gnuplot as a child process for the report's plots. See gnuplot.h.
#include "app/gnuplot.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "core/spawn.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// A fresh folder under the system's temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "mmr_report_XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      throw IoError(fmt::format("cannot create a temporary folder like {}: {}", pattern, std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A gnuplot string literal: single quotes take everything literally but a doubled quote.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

void write_series(const fs::path& file, const PlotSeries& s) {
  std::ostringstream out;
  out.precision(17);
  for (const PlotPoint& p : s.points) out << p.x << " " << p.y << " " << p.err << "\n";
  write_file_atomic(file, out.str());
}

// Lines with markers where the points are few enough to tell apart, error bars over seeds when there are any.
std::string plot_style(const ReportPlot& plot, const PlotSeries& s) {
  if (plot.error_bars) return "using 1:2:3 with yerrorlines";
  return s.points.size() <= 30 ? "using 1:2 with linespoints pointtype 7 pointsize 0.6" : "using 1:2 with lines";
}

std::string script(const ReportPlot& plot, const fs::path& dir, int width, int height) {
  std::ostringstream g;
  g << "set terminal svg size " << width << "," << height
    << " dynamic noenhanced font 'sans,11' background '#ffffff'\n"
    << "set output " << quoted((dir / "plot.svg").string()) << "\n"
    << "set title " << quoted(plot.title) << "\nset xlabel " << quoted(plot.xlabel) << "\nset ylabel "
    << quoted(plot.ylabel) << "\nset grid\nset key outside right top vertical\n";
  if (plot.series.size() > 24) g << "set key off\n";  // a legend taller than the plot says nothing
  if (!plot.categories.empty()) {
    g << "set xrange [-0.5:" << plot.categories.size() - 0.5 << "]\nset xtics (";
    for (size_t i = 0; i < plot.categories.size(); ++i) g << (i ? ", " : "") << quoted(plot.categories[i]) << " " << i;
    g << ")\n";
  }
  g << "plot ";
  for (size_t i = 0; i < plot.series.size(); ++i)
    g << (i ? ", \\\n     " : "") << quoted((dir / fmt::format("s{}.dat", i)).string()) << " "
      << plot_style(plot, plot.series[i]) << " title " << quoted(plot.series[i].title);
  g << "\n";
  return g.str();
}

// Runs `gnuplot script` with its output to `log`; signals the runner blocks are unblocked in the child.
int run_gnuplot(const fs::path& script_file, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int rc = spawn_process(pid, "gnuplot", {"gnuplot", script_file.string()}, {}, &actions);
  posix_spawn_file_actions_destroy(&actions);
  if (rc == ENOENT)
    throw Error("gnuplot was not found on PATH (expected it to draw the plots: install the Debian package "
                "gnuplot-nox, as tools/setup.sh does)");
  if (rc != 0) throw Error(fmt::format("cannot start gnuplot: {}", std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

}  // namespace

std::string plot_svg(const ReportPlot& plot, int width, int height) {
  const bool any = std::any_of(plot.series.begin(), plot.series.end(), [](const auto& s) { return !s.points.empty(); });
  if (!any) throw Error(fmt::format("plot '{}': no trial has a value to plot", plot.title));
  TempDir dir;
  for (size_t i = 0; i < plot.series.size(); ++i)
    write_series(dir.path() / fmt::format("s{}.dat", i), plot.series[i]);
  write_file_atomic(dir.path() / "plot.gp", script(plot, dir.path(), width, height));
  const int status = run_gnuplot(dir.path() / "plot.gp", dir.path() / "gnuplot.log");
  if (status != 0)
    throw Error(fmt::format("plot '{}': gnuplot exited with status {}: {}", plot.title, status,
                            read_file(dir.path() / "gnuplot.log")));
  return read_file(dir.path() / "plot.svg");
}

std::string inline_svg(const std::string& svg, const std::string& id_prefix) {
  const size_t start = svg.find("<svg");
  std::string out = start == std::string::npos ? svg : svg.substr(start);
  for (const char* q : {"'", "\""}) {
    replace_all(out, std::string("id=") + q, std::string("id=") + q + id_prefix);
    replace_all(out, std::string("href=") + q + "#", std::string("href=") + q + "#" + id_prefix);
  }
  replace_all(out, "url(#", "url(#" + id_prefix);
  return out;
}

}  // namespace mmr
