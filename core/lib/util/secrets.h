// Secrets read through ${env:NAME} (core/spec.h) are known to the process once a stage resolves them: from then
// on every log line (console and trial logs, core/log.cpp) and every error the runner stores or prints shows
// `shown` (the reference, "${env:NAME}") instead of the value. Values shorter than 8 characters are not registered:
// replacing every "8" of a log would hide more than it protects, and such a value is no secret.
#pragma once

#include <string>

namespace mmr {

void register_secret(const std::string& value, const std::string& shown);
std::string redact_secrets(std::string text);
bool any_secret();  // whether redact_secrets can change anything (a cheap check for every log line)

}  // namespace mmr
