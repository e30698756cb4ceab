/**
 * @file endpoint.hpp
 * @brief Where a server listens.
 */
#pragma once

#include <string>

namespace muxlab::test {

/// Where a server listens, as its ready line told.
struct Endpoint {
    std::string host;    ///< e.g. "127.0.0.1"
    unsigned port = 0;   ///< the real port (never 0)
};

}  // namespace muxlab::test
