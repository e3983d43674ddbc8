#include "json.h"

#include <cmath>

namespace edge4k {

Json parse_json(const std::string& content, const std::string& what) {
  try {
    return Json::parse(content);
  } catch (const Json::parse_error& e) {
    throw Error(what + " is not valid JSON (byte " + std::to_string(e.byte) + ")");
  }
}

const Json& field(const Json& object, const std::string& key, const std::string& where) {
  if (!object.is_object()) throw Error(where + " is not a JSON object");
  const auto it = object.find(key);
  if (it == object.end()) throw Error(where + " has no '" + key + "'");
  return *it;
}

double number(const Json& v, const std::string& what) {
  if (!v.is_number()) throw Error(what + " must be a number, got " + v.dump());
  return v.get<double>();
}

int integer(const Json& v, const std::string& what) {
  const double d = number(v, what);
  if (d != std::floor(d)) throw Error(what + " must be an integer, got " + v.dump());
  return static_cast<int>(d);
}

bool boolean(const Json& v, const std::string& what) {
  if (!v.is_boolean()) throw Error(what + " must be true or false, got " + v.dump());
  return v.get<bool>();
}

const std::string& text(const Json& v, const std::string& what) {
  if (!v.is_string()) throw Error(what + " must be a string, got " + v.dump());
  return v.get_ref<const std::string&>();
}

}  // namespace edge4k
