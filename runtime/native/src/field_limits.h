// The ranges of runtime/limits.json, the one list the Python side (runtime/limits.py) checks
// too, compiled in (CMakeLists.txt writes it into edge4k_limits.inc). Not named limits.h: that
// would shadow the C header of the same name on this folder's include path.
#pragma once

#include <string>

#include "json.h"

namespace edge4k {

// value, or Error "<where>: <group>.<key> is V, outside MIN..MAX" (or "expected one of [...]").
double check_limit(const std::string& group, const std::string& key, double value, const std::string& where);

// A JSON integer (or number) within limits.json's range for group.key.
int limited_integer(const Json& value, const std::string& group, const std::string& key, const std::string& where);
double limited_number(const Json& value, const std::string& group, const std::string& key, const std::string& where);

}  // namespace edge4k
