#include "arguments.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace caloflow::tools {

namespace {

[[noreturn]] void Fail(const std::string& name, const std::string& value, const std::string& expected) {
    throw UsageError("--" + name + ": expected " + expected + ", got '" + value + "'");
}

}  // namespace

Arguments::Arguments(int argc, const char* const* argv, const std::set<std::string>& valued,
                     const std::set<std::string>& flags) {
    for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.rfind("--", 0) != 0) {
            throw UsageError("unexpected argument '" + word + "'");
        }
        std::string name = word.substr(2);
        std::optional<std::string> inline_value;
        if (const auto equals = name.find('='); equals != std::string::npos) {
            inline_value = name.substr(equals + 1);
            name = name.substr(0, equals);
        }
        if (flags.count(name) > 0 && !inline_value) {
            flags_.insert(name);
        } else if (valued.count(name) > 0) {
            if (!inline_value && i + 1 >= argc) {
                throw UsageError("--" + name + " needs a value");
            }
            values_[name] = inline_value ? *inline_value : std::string(argv[++i]);
        } else {
            throw UsageError("unknown option --" + name);
        }
    }
}

std::optional<std::string> Arguments::text(const std::string& name) const {
    const auto found = values_.find(name);
    if (found == values_.end()) {
        return std::nullopt;
    }
    return found->second;
}

std::optional<std::uint64_t> Arguments::unsigned_integer(const std::string& name) const {
    const auto value = text(name);
    if (!value) {
        return std::nullopt;
    }
    char* end = nullptr;
    errno = 0;
    const unsigned long long parsed = std::strtoull(value->c_str(), &end, 10);
    if (value->empty() || (*value)[0] == '-' || *end != '\0' || errno == ERANGE) {
        Fail(name, *value, "a non-negative integer");
    }
    return static_cast<std::uint64_t>(parsed);
}

std::optional<double> Arguments::number(const std::string& name) const {
    const auto value = text(name);
    if (!value) {
        return std::nullopt;
    }
    char* end = nullptr;
    errno = 0;
    const double parsed = std::strtod(value->c_str(), &end);
    if (value->empty() || *end != '\0' || errno == ERANGE || !std::isfinite(parsed)) {
        Fail(name, *value, "a number");
    }
    return parsed;
}

std::vector<float> Arguments::numbers(const std::string& name) const {
    std::vector<float> out;
    const auto value = text(name);
    if (!value) {
        return out;
    }
    std::size_t begin = 0;
    while (begin <= value->size()) {
        const std::size_t comma = std::min(value->find(',', begin), value->size());
        const std::string item = value->substr(begin, comma - begin);
        char* end = nullptr;
        const float parsed = std::strtof(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !std::isfinite(parsed)) {
            Fail(name, *value, "comma-separated numbers");
        }
        out.push_back(parsed);
        begin = comma + 1;
    }
    return out;
}

}  // namespace caloflow::tools
