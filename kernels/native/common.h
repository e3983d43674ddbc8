// What every native kernel shares: the one-line error type (like Edge4KError).
#pragma once

#include <stdexcept>

namespace edge4k {

// A problem with the input or the build, explained in one line.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace edge4k
