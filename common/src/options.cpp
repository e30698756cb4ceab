#include "muxlab/options.hpp"

#include <errno.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace muxlab {
namespace {

void print_usage(std::FILE* out, const char* program, const char* summary,
                 const std::vector<IntOption>& extra) {
    std::fprintf(out, "usage: %s [-H HOST] [-p PORT]", program);
    for (const IntOption& option : extra) std::fprintf(out, " [--%s N]", option.name);
    std::fprintf(out, "\n%s\n\n", summary);
    std::fprintf(out, "  -H HOST  address to listen on (default 127.0.0.1)\n");
    std::fprintf(out, "  -p PORT  port to listen on; 0 picks a free one (default %s)\n",
                 kDefaultPort);
    for (const IntOption& option : extra)
        std::fprintf(out, "  --%s N  %s (default %ld)\n", option.name, option.help, *option.value);
    std::fprintf(out, "  --help   show this help\n\n"
                      "Once listening, prints 'listening on HOST:PORT' on stdout.\n");
}

[[noreturn]] void usage_error(const char* program, const char* summary,
                              const std::vector<IntOption>& extra, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", program, message.c_str());
    print_usage(stderr, program, summary, extra);
    std::exit(2);
}

bool parse_long(const char* text, long min, long max, long* out) {
    char* end = nullptr;
    errno = 0;
    long value = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) return false;
    *out = value;
    return true;
}

}  // namespace

Options parse_options(int argc, char** argv, const char* summary,
                      const std::vector<IntOption>& extra) {
    const char* program = argc > 0 ? argv[0] : "server";
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            print_usage(stdout, program, summary, extra);
            std::exit(0);
        }
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (arg == "-H" || arg == "-p") {
            if (value == nullptr) usage_error(program, summary, extra, arg + " needs a value");
            if (arg == "-H") {
                options.host = value;
            } else {
                long port = 0;
                if (!parse_long(value, 0, 65535, &port))
                    usage_error(program, summary, extra,
                                std::string("bad port '") + value + "' (want 0-65535)");
                options.port = std::to_string(port);
            }
            ++i;
            continue;
        }
        const IntOption* match = nullptr;
        for (const IntOption& option : extra)
            if (arg == std::string("--") + option.name) match = &option;
        if (match == nullptr) usage_error(program, summary, extra, "unknown option '" + arg + "'");
        if (value == nullptr) usage_error(program, summary, extra, arg + " needs a value");
        if (!parse_long(value, match->min, match->max, match->value))
            usage_error(program, summary, extra,
                        "bad value '" + std::string(value) + "' for " + arg + " (want " +
                            std::to_string(match->min) + "-" + std::to_string(match->max) + ")");
        ++i;
    }
    return options;
}

}  // namespace muxlab
