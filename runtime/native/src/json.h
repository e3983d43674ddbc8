// JSON through nlohmann/json (ordered, so the profile reads like the Python one),
// plus typed access whose one-line errors name the value, which nlohmann's own
// messages do not.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common.h"

namespace edge4k {

using Json = nlohmann::ordered_json;

// Parses text; `what` (a file name) goes into the error.
Json parse_json(const std::string& text, const std::string& what);

// object[key], or Error "<where> has no '<key>'".
const Json& field(const Json& object, const std::string& key, const std::string& where);
double number(const Json& value, const std::string& what);
int integer(const Json& value, const std::string& what);
bool boolean(const Json& value, const std::string& what);
const std::string& text(const Json& value, const std::string& what);

}  // namespace edge4k
