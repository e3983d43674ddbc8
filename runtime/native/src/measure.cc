#include "measure.h"

#include <dirent.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>

#ifdef __ANDROID__
#include <sys/system_properties.h>
#endif

namespace edge4k {

const char* const kStages[6] = {"raw_preprocess", "global", "encoder", "backbone", "decoder", "postprocess"};

namespace {

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

bool read_text(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::getline(f, *out, '\0');
  while (!out->empty() && (out->back() == '\n' || out->back() == ' ')) out->pop_back();
  return true;
}

bool read_number(const std::string& path, double* out) {
  std::string s;
  if (!read_text(path, &s) || s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end != s.c_str();
}

// Entries of a directory whose names start with prefix, in natural order (cpu2 < cpu10).
std::vector<std::string> list_dir(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.compare(0, prefix.size(), prefix) == 0 && n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  return names;
}

double mean(const std::vector<double>& xs) {
  return xs.empty() ? 0.0 : std::accumulate(xs.begin(), xs.end(), 0.0) / static_cast<double>(xs.size());
}

}  // namespace

// ---- timing -------------------------------------------------------------------

void StageTimer::start_run() {
  current_.clear();
  for (const char* s : kStages) current_[s] = 0.0;
  active_ = true;
  t0_ = Clock::now();
}

void StageTimer::end_run() {
  current_["total"] = std::chrono::duration<double>(Clock::now() - t0_).count();
  runs_.push_back(current_);
  active_ = false;
}

void StageTimer::add(const std::string& stage, Clock::duration d) {
  if (active_) current_[stage] += std::chrono::duration<double>(d).count();
}

Json StageTimer::summary_ms() const {
  Json out = Json::object();
  std::vector<std::string> names(kStages, kStages + 6);
  names.push_back("total");
  for (const auto& stage : names) {
    std::vector<double> xs;
    for (const auto& r : runs_) xs.push_back(r.at(stage) * 1e3);
    std::sort(xs.begin(), xs.end());
    const size_t n = xs.size();
    const double median = n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
    out[stage] = {{"median", round3(median)}, {"min", round3(xs.front())}, {"max", round3(xs.back())}};
  }
  return out;
}

// ---- memory -------------------------------------------------------------------

long long peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmHWM:") == 0) return std::atoll(line.c_str() + 6) * 1024;   // reported in kB
  return -1;
}

// ---- power --------------------------------------------------------------------

PowerSampler::PowerSampler(std::string root, int period_ms) : period_ms_(period_ms) {
  for (const auto& name : list_dir(root, "")) {
    std::string type;
    if (read_text(root + "/" + name + "/type", &type) && type == "Battery") {
      dir_ = root + "/" + name;
      break;
    }
  }
  if (dir_.empty()) {
    reason_ = "no battery under " + root + " (a host without a battery); power is measured on phones";
    return;
  }
  double w;
  if (!read_watts(&w)) {
    reason_ = "battery " + dir_ + " has no readable current_now and voltage_now";
    return;
  }
  std::string status;
  if (read_text(dir_ + "/status", &status) && (status == "Charging" || status == "Full"))
    reason_ = "the battery is " + status + " (" + dir_ + "/status), so current_now is not the phone's draw; "
              "unplug USB and connect over wireless adb (adb tcpip 5555; adb connect PHONE_IP:5555)";
}

PowerSampler::~PowerSampler() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
}

bool PowerSampler::read_watts(double* watts) const {
  double ua, uv;
  if (!read_number(dir_ + "/current_now", &ua) || !read_number(dir_ + "/voltage_now", &uv)) return false;
  *watts = std::fabs(ua) * 1e-6 * uv * 1e-6;   // power_supply ABI: microamps, microvolts
  return true;
}

void PowerSampler::sample_until_stopped(std::vector<double>* out) {
  while (running_) {
    double w;
    if (read_watts(&w)) out->push_back(w);
    std::this_thread::sleep_for(std::chrono::milliseconds(period_ms_));
  }
}

void PowerSampler::measure_idle(double seconds) {
  if (!available() || seconds <= 0) return;
  running_ = true;
  std::thread t([this] { sample_until_stopped(&idle_); });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  running_ = false;
  t.join();
}

void PowerSampler::start() {
  if (!available()) return;
  running_ = true;
  thread_ = std::thread([this] { sample_until_stopped(&busy_); });
}

Json PowerSampler::stop(int images, double seconds) {
  auto unavailable = [](const std::string& why) {
    return Json{{"available", false}, {"reason", why}};
  };
  if (!available()) return unavailable(reason_);
  running_ = false;
  if (thread_.joinable()) thread_.join();
  std::string status;
  if (read_text(dir_ + "/status", &status) && (status == "Charging" || status == "Full"))
    return unavailable("the battery started " + status + " during the run; unplug USB and use wireless adb");
  if (busy_.empty()) return unavailable("no battery samples during the timed runs; use more --runs");
  const double gross = mean(busy_), idle = mean(idle_), net = gross - idle;
  if (net <= 0) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "the draw during the runs (%.3f W) was not above the idle baseline (%.3f W); "
                  "use more --runs for a measurable difference", gross, idle);
    return unavailable(buf);
  }
  std::ostringstream method;
  method << "battery current_now x voltage_now (" << dir_ << "), " << busy_.size() << " samples every "
         << period_ms_ << " ms during the timed runs, minus the idle mean of " << idle_.size()
         << " samples taken before them (whole phone: screen, radios and other apps included)";
  if (idle_.empty()) method << "; no idle baseline was taken (--idle-seconds 0), so this is the gross draw";
  return Json{{"available", true}, {"method", method.str()}, {"mean_watts", round3(net)},
              {"joules_per_image", std::round(net * seconds / images * 1e4) / 1e4},
              {"idle_watts", round3(idle)}, {"gross_watts", round3(gross)},
              {"samples", static_cast<int>(busy_.size())}};
}

// ---- thermal ------------------------------------------------------------------

Json thermal_snapshot(const std::string& sys) {
  Json zones = Json::object(), cpus = Json::object(), cooling = Json::object();
  const std::string thermal = sys + "/class/thermal";
  for (const auto& z : list_dir(thermal, "thermal_zone")) {
    std::string type;
    double t;
    if (!read_number(thermal + "/" + z + "/temp", &t)) continue;
    if (!read_text(thermal + "/" + z + "/type", &type)) type = z;
    if (std::fabs(t) >= 1000) t /= 1000;   // the ABI says millidegrees; a few old drivers report degrees
    zones[zones.contains(type) ? type + "-" + z.substr(12) : type] = round3(t);
  }
  for (const auto& c : list_dir(thermal, "cooling_device")) {
    std::string type;
    double state;
    if (read_text(thermal + "/" + c + "/type", &type) && read_number(thermal + "/" + c + "/cur_state", &state))
      cooling[type + " (" + c + ")"] = static_cast<int>(state);
  }
  const std::string cpu_root = sys + "/devices/system/cpu";
  for (const auto& c : list_dir(cpu_root, "cpu")) {
    const std::string f = cpu_root + "/" + c + "/cpufreq/";
    double cur, max, hw_max;
    if (read_number(f + "scaling_cur_freq", &cur) && read_number(f + "scaling_max_freq", &max) &&
        read_number(f + "cpuinfo_max_freq", &hw_max))
      cpus[c] = {{"cur_khz", static_cast<long long>(cur)}, {"max_khz", static_cast<long long>(max)},
                 {"hw_max_khz", static_cast<long long>(hw_max)}};
  }
  if (zones.empty() && cpus.empty())
    return Json{{"available", false},
                {"reason", "no readable thermal zones in " + thermal + " and no cpufreq in " + cpu_root +
                               " (a container or VM does not expose them)"}};
  return Json{{"available", true}, {"zones_c", zones}, {"cpu_freq", cpus}, {"cooling_state", cooling}};
}

Json thermal_report(const Json& before, const Json& after) {
  if (!after["available"].get<bool>()) return after;
  Json evidence = Json::array();
  const bool had = before["available"].get<bool>();
  for (const auto& [cpu, f] : after["cpu_freq"].items()) {
    const long long max = f["max_khz"].get<long long>(), hw = f["hw_max_khz"].get<long long>();
    if (had && before["cpu_freq"].contains(cpu) && max < before["cpu_freq"][cpu]["max_khz"].get<long long>())
      evidence.push_back(cpu + " max frequency lowered during the run to " + std::to_string(max) + " kHz");
    else if (max < hw)
      evidence.push_back(cpu + " capped at " + std::to_string(max) + " of " + std::to_string(hw) + " kHz");
  }
  for (const auto& [dev, state] : after["cooling_state"].items()) {
    const bool cpu_cooler = dev.find("cpu") != std::string::npos;
    const int was = had && before["cooling_state"].contains(dev) ? before["cooling_state"][dev].get<int>() : 0;
    if (cpu_cooler && state.get<int>() > was)
      evidence.push_back("cooling device " + dev + " rose from state " + std::to_string(was) + " to " +
                         std::to_string(state.get<int>()));
  }
  const bool throttled = !evidence.empty();
  return Json{{"available", true}, {"before", before}, {"after", after}, {"throttled", throttled},
              {"evidence", evidence}};
}

// ---- device -------------------------------------------------------------------

#ifdef __ANDROID__
static std::string property(const char* name) {
  char value[PROP_VALUE_MAX] = {};
  __system_property_get(name, value);
  return value;
}
#endif

Json device_info() {
#ifdef __ANDROID__
  std::string soc = property("ro.soc.model");
  if (soc.empty()) soc = property("ro.board.platform");
  const std::string maker = property("ro.soc.manufacturer");
  return Json{{"name", property("ro.product.manufacturer") + " " + property("ro.product.model")},
              {"os", "Android " + property("ro.build.version.release") + " (API " + property("ro.build.version.sdk") + ")"},
              {"soc", maker.empty() ? soc : maker + " " + soc}};
#else
  utsname u{};
  uname(&u);
  std::string soc = u.machine;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.compare(0, 10, "model name") == 0 || line.compare(0, 8, "Hardware") == 0) {
      soc = line.substr(line.find(':') + 1);
      soc.erase(0, soc.find_first_not_of(' '));
      break;
    }
  return Json{{"name", std::string(u.nodename)}, {"os", std::string(u.sysname) + " " + u.release}, {"soc", soc}};
#endif
}

}  // namespace edge4k
