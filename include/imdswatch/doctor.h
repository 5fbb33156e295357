// `imdswatch doctor`: reads the findings a running agent serves (JSON, as
// Diagnoser::CurrentJson writes them) or a local Diagnoser's, prints them
// for people or scripts, and turns them into an exit code.
#pragma once

#include <string>
#include <vector>

#include "imdswatch/diagnoser.h"

namespace imdswatch {

// Parses FindingsJson/CurrentJson output: a JSON array of finding objects,
// or an object holding that array under "findings". Unknown fields are
// ignored, missing ones left empty; numbers that are not numbers are skipped.
// On malformed input returns {} and, when error is not null, sets *error
// (cleared on success).
std::vector<Finding> ParseFindingsJson(const std::string& text, std::string* error);

// json: the findings as FindingsJson writes them (an array; "[]" when none).
// text: one block per finding, blocks separated by a blank line:
//   namespace/pod (container) — kind: title
//     Evidence: ...
//     Cause: ...
//     Fix: ...
// (a workload outside any pod is named by its workload label), or a single
// line saying nothing was found.
std::string FormatFindings(const std::vector<Finding>& findings, bool json);

// 0 when there are no findings, 1 when there is at least one.
int DoctorExitCode(const std::vector<Finding>& findings);

}  // namespace imdswatch
