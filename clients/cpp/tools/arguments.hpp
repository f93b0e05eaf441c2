// A small "--name value" / "--flag" command-line parser shared by the programs (no dependency beyond the
// standard library). Errors are UsageError naming the option.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace caloflow::tools {

class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Arguments {
public:
    // valued: options that take a value; flags: options that do not. Anything else is a UsageError.
    Arguments(int argc, const char* const* argv, const std::set<std::string>& valued, const std::set<std::string>& flags);

    bool has(const std::string& name) const { return values_.count(name) > 0 || flags_.count(name) > 0; }
    std::optional<std::string> text(const std::string& name) const;
    std::optional<std::uint64_t> unsigned_integer(const std::string& name) const;
    std::optional<double> number(const std::string& name) const;
    // A comma-separated list of numbers ("1000,2000.5").
    std::vector<float> numbers(const std::string& name) const;

private:
    std::map<std::string, std::string> values_;
    std::set<std::string> flags_;
};

}  // namespace caloflow::tools
