/**
 * @file options.hpp
 * @brief The command line every muxlab server shares: `[-H HOST] [-p PORT] [stage options]`.
 */
#pragma once

#include <string>
#include <vector>

namespace muxlab {

/// The port a server uses when `-p` is not given (humans type it; tests use `-p 0`).
constexpr const char* kDefaultPort = "7000";

/// A stage-specific numeric option such as `--max-clients N`.
struct IntOption {
    const char* name;   ///< long name without dashes, e.g. "max-clients"
    const char* help;   ///< one line for --help
    long* value;        ///< receives the value; its initial value is the default
    long min;           ///< smallest accepted value
    long max;           ///< largest accepted value
};

/// Where a server listens, as given on the command line.
struct Options {
    std::string host = "127.0.0.1";  ///< -H: address to bind
    std::string port = kDefaultPort; ///< -p: port to bind; "0" lets the kernel choose
};

/**
 * @brief Parses the shared server command line.
 *
 * Understands `-H HOST`, `-p PORT`, `--help` and any @p extra `--name N`
 * options. `--help` prints usage to stdout and exits 0; a bad option prints a
 * clear message and the usage to stderr and exits with status 2.
 *
 * @param argc, argv  as given to main()
 * @param summary     one line saying what this server does, shown by --help
 * @param extra       stage-specific numeric options
 */
Options parse_options(int argc, char** argv, const char* summary,
                      const std::vector<IntOption>& extra = {});

}  // namespace muxlab
