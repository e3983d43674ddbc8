#include "field_limits.h"

#include <cmath>
#include <cstdio>

namespace edge4k {
namespace {

const Json& rules() {
  static const Json parsed = parse_json(
#include "edge4k_limits.inc"
      , "runtime/limits.json");
  return parsed;
}

std::string shown(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

double check_limit(const std::string& group, const std::string& key, double value, const std::string& where) {
  const Json& rule = rules().at(group).at(key);
  const std::string name = where + ": " + group + "." + key + " is " + shown(value);
  if (rule.contains("choices")) {
    for (const auto& choice : rule["choices"])
      if (choice.get<double>() == value) return value;
    throw Error(name + ", expected one of " + rule["choices"].dump());
  }
  const double lo = rule["min"].get<double>(), hi = rule["max"].get<double>();
  if (!(value >= lo && value <= hi)) throw Error(name + ", outside " + shown(lo) + ".." + shown(hi));
  return value;
}

double limited_number(const Json& v, const std::string& group, const std::string& key, const std::string& where) {
  if (!v.is_number()) throw Error(where + ": " + group + "." + key + " must be a number, got " + v.dump().substr(0, 80));
  return check_limit(group, key, v.get<double>(), where);
}

int limited_integer(const Json& v, const std::string& group, const std::string& key, const std::string& where) {
  const double d = limited_number(v, group, key, where);
  if (d != std::floor(d)) throw Error(where + ": " + group + "." + key + " must be an integer, got " + v.dump());
  return static_cast<int>(d);   // in range: every limit fits an int
}

}  // namespace edge4k
