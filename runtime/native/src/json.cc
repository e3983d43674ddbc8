#include "json.h"

#include <cmath>

namespace edge4k {

namespace {

// Python's json module writes Infinity, -Infinity and NaN (a build's PSNR against
// itself is inf), which JSON proper has no words for: read them as null.
std::string without_python_floats(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  bool in_string = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < in.size()) out += in[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    size_t replaced = 0;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(word);
      if (!replaced && in.compare(i, n, word) == 0) replaced = n;
    }
    if (replaced) {
      out += "null";
      i += replaced - 1;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Json parse_json(const std::string& content, const std::string& what) {
  // Nothing the runner reads nests deeper than a few levels; a document that does would overflow
  // the stack of every recursive walk over it (dump, comparison), so it is refused while parsing.
  constexpr int kMaxDepth = 64;
  const auto limit_depth = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth) throw Error(what + " nests deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  try {
    return Json::parse(without_python_floats(content), limit_depth);
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
  if (!(d >= -2147483648.0 && d <= 2147483647.0)) throw Error(what + " is out of range, got " + v.dump());
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
