#include "imdswatch/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace imdswatch {

ProcessStats ReadProcessStats(const std::string& proc_root) {
  ProcessStats out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream stat(proc_root + "/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // fields after the ")" that closes the command name: state is field 3
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    double utime = 0, stime = 0, starttime = 0, rss_pages = 0;
    for (int i = 3; rest >> field; i++) {
      if (i == 14) utime = std::stod(field);
      if (i == 15) stime = std::stod(field);
      if (i == 22) starttime = std::stod(field);
      if (i == 24) rss_pages = std::stod(field);
    }
    out.cpu_seconds = (utime + stime) / ticks;
    out.resident_bytes = rss_pages * static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream boot_stat(proc_root + "/stat");
    std::string key;
    double btime = 0;
    while (boot_stat >> key)
      if (key == "btime" && (boot_stat >> btime)) break;
    out.start_time_seconds = btime + starttime / ticks;
  }
  if (DIR* dir = opendir((proc_root + "/self/fd").c_str())) {
    while (dirent* entry = readdir(dir))
      if (entry->d_name[0] != '.') out.open_fds++;
    closedir(dir);
    out.open_fds--;  // the directory being read
  }
  return out;
}

}  // namespace imdswatch
