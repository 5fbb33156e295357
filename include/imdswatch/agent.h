// Composition root: builds the parts in dependency order, runs the event
// loop, and tears down in reverse (HTTP first, kernel programs last).
#pragma once

#include "imdswatch/config.h"

namespace imdswatch {

// Each returns the process exit code.
int RunAgent(const AgentConfig& config);
int RunTrace(const AgentConfig& config, OutputFormat output);
int RunDoctor(const Command& command);

}  // namespace imdswatch
