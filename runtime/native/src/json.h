// A small JSON value: parse the build's manifest and the frame sidecar, write the
// profile. Objects keep their insertion order so the profile reads like the
// Python one.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace edge4k {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::Bool), bool_(b) {}
  Json(int v) : type_(Type::Number), number_(v), integral_(true) {}
  Json(long v) : type_(Type::Number), number_(static_cast<double>(v)), integral_(true) {}
  Json(long long v) : type_(Type::Number), number_(static_cast<double>(v)), integral_(true) {}
  Json(unsigned long v) : type_(Type::Number), number_(static_cast<double>(v)), integral_(true) {}
  Json(double v) : type_(Type::Number), number_(v) {}
  Json(const char* s) : type_(Type::String), string_(s) {}
  Json(std::string s) : type_(Type::String), string_(std::move(s)) {}
  Json(Array a) : type_(Type::Array), array_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : type_(Type::Object), object_(std::make_shared<Object>(std::move(o))) {}

  static Json parse(const std::string& text);   // throws edge4k::Error with the position

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Typed access; `what` names the value in the error if it has another type.
  double number(const std::string& what = "value") const;
  int integer(const std::string& what = "value") const;
  bool boolean(const std::string& what = "value") const;
  const std::string& str(const std::string& what = "value") const;
  const Array& array(const std::string& what = "value") const;
  const Object& object(const std::string& what = "value") const;

  bool has(const std::string& key) const;
  const Json& operator[](const std::string& key) const;   // throws if missing
  Json& set(const std::string& key, Json value);           // add or replace; returns *this
  void push(Json value);

  std::string dump(int indent = 2) const;

 private:
  void write(std::string& out, int indent, int depth) const;

  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0;
  bool integral_ = false;
  std::string string_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
};

}  // namespace edge4k
