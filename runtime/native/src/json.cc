#include "json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "edge4k_kernels.h"

namespace edge4k {
namespace {

const char* type_name(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "a boolean";
    case Json::Type::Number: return "a number";
    case Json::Type::String: return "a string";
    case Json::Type::Array: return "an array";
    case Json::Type::Object: return "an object";
  }
  return "?";
}

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json document() {
    Json v = value();
    space();
    if (pos_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw Error("invalid JSON at byte " + std::to_string(pos_) + ": " + why);
  }
  void space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  bool eat(char c) {
    space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool word(const char* w) {
    const size_t n = std::char_traits<char>::length(w);
    if (s_.compare(pos_, n, w) == 0) {
      pos_ += n;
      return true;
    }
    return false;
  }

  Json value() {
    space();
    if (pos_ >= s_.size()) fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Json(string());
    if (word("true")) return Json(true);
    if (word("false")) return Json(false);
    if (word("null")) return Json();
    return number();
  }

  Json object() {
    expect('{');
    Json::Object o;
    if (eat('}')) return Json(std::move(o));
    do {
      space();
      std::string key = string();
      expect(':');
      o.emplace_back(std::move(key), value());
    } while (eat(','));
    expect('}');
    return Json(std::move(o));
  }

  Json array() {
    expect('[');
    Json::Array a;
    if (eat(']')) return Json(std::move(a));
    do a.push_back(value());
    while (eat(','));
    expect(']');
    return Json(std::move(a));
  }

  Json number() {
    const char* begin = s_.c_str() + pos_;
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    if (end == begin) fail("unexpected character");
    const std::string text(begin, static_cast<const char*>(end));
    pos_ += text.size();
    Json j(v);
    if (text.find_first_of(".eE") == std::string::npos && std::fabs(v) < 9.007e15) j = Json(static_cast<long long>(v));
    return j;
  }

  std::string string() {
    if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string");
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      c = s_[pos_++];
      switch (c) {
        case '"': case '\\': case '/': out += c; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': utf8(out, codepoint()); break;
        default: fail("bad escape");
      }
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("short \\u escape");
    const unsigned v = static_cast<unsigned>(std::strtoul(s_.substr(pos_, 4).c_str(), nullptr, 16));
    pos_ += 4;
    return v;
  }
  unsigned codepoint() {
    unsigned cp = hex4();
    if (cp >= 0xD800 && cp < 0xDC00 && word("\\u")) cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
    return cp;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
};

void write_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

Json Json::parse(const std::string& text) { return Parser(text).document(); }

#define EDGE4K_EXPECT(kind, name)                                                                   \
  if (type_ != Type::kind) throw Error(what + " is " + type_name(type_) + ", expected " + name)

double Json::number(const std::string& what) const {
  EDGE4K_EXPECT(Number, "a number");
  return number_;
}
int Json::integer(const std::string& what) const {
  EDGE4K_EXPECT(Number, "an integer");
  if (number_ != std::floor(number_)) throw Error(what + " is not an integer");
  return static_cast<int>(number_);
}
bool Json::boolean(const std::string& what) const {
  EDGE4K_EXPECT(Bool, "a boolean");
  return bool_;
}
const std::string& Json::str(const std::string& what) const {
  EDGE4K_EXPECT(String, "a string");
  return string_;
}
const Json::Array& Json::array(const std::string& what) const {
  EDGE4K_EXPECT(Array, "an array");
  return *array_;
}
const Json::Object& Json::object(const std::string& what) const {
  EDGE4K_EXPECT(Object, "an object");
  return *object_;
}
#undef EDGE4K_EXPECT

bool Json::has(const std::string& key) const {
  if (type_ != Type::Object) return false;
  for (const auto& kv : *object_)
    if (kv.first == key) return true;
  return false;
}

const Json& Json::operator[](const std::string& key) const {
  for (const auto& kv : object("JSON value")) if (kv.first == key) return kv.second;
  throw Error("missing key '" + key + "'");
}

Json& Json::set(const std::string& key, Json value) {
  if (type_ == Type::Null) *this = Json(Object{});
  object("JSON value");
  if (object_.use_count() > 1) object_ = std::make_shared<Object>(*object_);   // copy on write
  for (auto& kv : *object_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return *this;
    }
  object_->emplace_back(key, std::move(value));
  return *this;
}

void Json::push(Json value) {
  if (type_ == Type::Null) *this = Json(Array{});
  array("JSON value");
  if (array_.use_count() > 1) array_ = std::make_shared<Array>(*array_);   // copy on write
  array_->push_back(std::move(value));
}

std::string Json::dump(int indent) const {
  std::string out;
  write(out, indent, 0);
  return out;
}

void Json::write(std::string& out, int indent, int depth) const {
  const std::string pad = "\n" + std::string(static_cast<size_t>(indent) * (depth + 1), ' ');
  const std::string close = "\n" + std::string(static_cast<size_t>(indent) * depth, ' ');
  switch (type_) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += bool_ ? "true" : "false"; break;
    case Type::Number: {
      char buf[32];
      if (!std::isfinite(number_)) out += "null";   // JSON has no inf/nan
      else {
        std::snprintf(buf, sizeof buf, integral_ ? "%.0f" : "%.15g", number_);
        out += buf;
      }
      break;
    }
    case Type::String: write_string(out, string_); break;
    case Type::Array:
      if (array_->empty()) { out += "[]"; break; }
      out += '[';
      for (size_t i = 0; i < array_->size(); ++i) {
        if (i) out += ',';
        out += pad;
        (*array_)[i].write(out, indent, depth + 1);
      }
      out += close + ']';
      break;
    case Type::Object:
      if (object_->empty()) { out += "{}"; break; }
      out += '{';
      for (size_t i = 0; i < object_->size(); ++i) {
        if (i) out += ',';
        out += pad;
        write_string(out, (*object_)[i].first);
        out += ": ";
        (*object_)[i].second.write(out, indent, depth + 1);
      }
      out += close + '}';
      break;
  }
}

}  // namespace edge4k
