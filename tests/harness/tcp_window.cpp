#include "harness/tcp_window.hpp"

// <linux/tcp.h>, not <netinet/tcp.h>: only the kernel's header has
// tcpi_snd_wnd (Linux 5.19 and later); the two cannot share a file.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace muxlab::test {

std::optional<std::size_t> peer_receive_window(int fd) {
    struct tcp_info info {};
    socklen_t size = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return std::nullopt;
    // An older kernel fills less of the structure than this header knows.
    if (size < offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof info.tcpi_snd_wnd) return std::nullopt;
    return info.tcpi_snd_wnd;
}

}  // namespace muxlab::test
