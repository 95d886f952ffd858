#pragma once
// Words from configs, flags and the environment: names such as "FULL_SHARD"
// or "cpu" are compared without regard to case, and messages list the
// choices a value may take. Private to the library.
//
// Case is changed byte by byte, through unsigned char: std::tolower of a
// negative char (any byte of a UTF-8 character) is undefined behaviour.
#include <string>
#include <string_view>
#include <vector>

namespace accel {

/// `text` with each byte passed through std::tolower (the "C" locale: A-Z
/// lowered, every other byte unchanged).
std::string lower(std::string text);
/// Same with std::toupper.
std::string upper(std::string text);

/// `text` without the spaces and tabs at either end.
std::string trim(std::string_view text);

/// The items one after the other, `separator` between two: join({"a", "b"})
/// is "a, b".
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

}  // namespace accel
