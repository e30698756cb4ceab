/**
 * @file net.hpp
 * @brief The socket boilerplate every stage shares, kept out of the lesson.
 */
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "muxlab/fd.hpp"
#include "muxlab/options.hpp"

namespace muxlab {

/**
 * @brief Opens a TCP socket listening on the host and port in @p options.
 *
 * Resolves the host with getaddrinfo (IPv4 or IPv6), sets SO_REUSEADDR so a
 * restarted server can bind at once, binds and listens with a backlog of
 * SOMAXCONN. The socket is blocking unless @p nonblocking is true.
 * On failure prints the reason to stderr and exits with status 1.
 */
Fd listen_tcp(const Options& options, bool nonblocking = false);

/**
 * @brief Prints the ready line `PREFIX HOST:PORT` on stdout and flushes it.
 *
 * This is the server contract: test tools wait for this exact line to learn
 * the real port when the server was started with `-p 0`.
 */
void announce(int listen_fd, const char* prefix = "listening on");

/**
 * @brief Writes all @p len bytes to a blocking socket, retrying partial
 *        writes and EINTR.
 *
 * Uses send() with MSG_NOSIGNAL, so a peer that has gone away gives EPIPE
 * instead of killing the process with SIGPIPE.
 * @return true when every byte was written, false on an error (errno is set).
 */
bool write_all(int fd, const void* data, std::size_t len);

/// Adds O_NONBLOCK to @p fd's file status flags. @return false on error.
bool set_nonblocking(int fd);

/// Prints `PROGRAM: WHAT: strerror(errno)` to stderr, like perror() with a program name.
void log_errno(const char* what);

}  // namespace muxlab
