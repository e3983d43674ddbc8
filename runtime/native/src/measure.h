// Measurement: per-stage steady-clock timing, peak memory, battery power and the
// thermal state. Every reading that cannot be taken says why instead of guessing.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "json.h"

namespace edge4k {

extern const char* const kStages[6];   // raw_preprocess, global, encoder, backbone, decoder, postprocess

// Wall time per stage within a run (a stage may be entered once per tile batch),
// summarised over runs as median/min/max in milliseconds, like runtime/profile.py.
class StageTimer {
 public:
  using Clock = std::chrono::steady_clock;
  void start_run();
  void end_run();
  void add(const std::string& stage, Clock::duration d);
  Json summary_ms() const;

 private:
  std::vector<std::map<std::string, double>> runs_;
  std::map<std::string, double> current_;
  Clock::time_point t0_;
  bool active_ = false;
};

// Times one block into a StageTimer (no-op when the timer is null: warm-up runs).
class Scope {
 public:
  Scope(StageTimer* timer, const char* stage) : timer_(timer), stage_(stage), t0_(StageTimer::Clock::now()) {}
  ~Scope() {
    if (timer_) timer_->add(stage_, StageTimer::Clock::now() - t0_);
  }

 private:
  StageTimer* timer_;
  const char* stage_;
  StageTimer::Clock::time_point t0_;
};

// Peak resident set (VmHWM in /proc/self/status), bytes; -1 if unreadable.
long long peak_rss_bytes();

// Battery power from sysfs (current_now in uA x voltage_now in uV), sampled on a
// background thread: first an idle baseline, then during the timed runs.
class PowerSampler {
 public:
  explicit PowerSampler(std::string supply_root = "/sys/class/power_supply", int period_ms = 20);
  ~PowerSampler();
  bool available() const { return reason_.empty(); }
  const std::string& reason() const { return reason_; }
  void measure_idle(double seconds);   // blocks; sleeps while sampling
  void start();
  // The profile's "power" object for `images` timed runs lasting `seconds` in all.
  Json stop(int images, double seconds);

 private:
  bool read_watts(double* watts) const;
  void sample_until_stopped(std::vector<double>* out);

  std::string dir_, reason_;
  int period_ms_;
  std::vector<double> idle_, busy_;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

// Thermal zones (degrees C) and CPU frequencies (kHz) right now, or available:false.
Json thermal_snapshot(const std::string& sys_root = "/sys");
// {"available", "before", "after", "throttled", "evidence"} from two snapshots.
Json thermal_report(const Json& before, const Json& after);

// name, os, soc of this machine (Android system properties on a phone).
Json device_info();

}  // namespace edge4k
