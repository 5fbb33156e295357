#pragma once

#include <string>

namespace imdswatch {

// level: trace|debug|info|warn|error; format: text|json (one object a line).
void SetupLogging(const std::string& level, const std::string& format);

}  // namespace imdswatch
