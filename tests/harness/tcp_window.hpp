/**
 * @file tcp_window.hpp
 * @brief How many bytes a connection's peer will take now: its advertised
 *        receive window, as the kernel's TCP_INFO reports it.
 */
#pragma once

#include <cstddef>
#include <optional>

namespace muxlab::test {

/**
 * The receive window the peer of socket @p fd last advertised, in bytes
 * (tcpi_snd_wnd), or nothing where the kernel does not report it. While
 * the server is stopped, a client that sends no more than this leaves
 * nothing in its own send queue: every byte sits in the server's socket
 * and reaches the server as one event when it resumes.
 */
std::optional<std::size_t> peer_receive_window(int fd);

}  // namespace muxlab::test
