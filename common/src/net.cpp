#include "muxlab/net.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace muxlab {

Fd listen_tcp(const Options& options, bool nonblocking) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(options.host.c_str(), options.port.c_str(), &hints, &found);
    if (rc != 0) {
        std::fprintf(stderr, "%s: cannot resolve %s: %s\n", program_invocation_short_name,
                     options.host.c_str(), gai_strerror(rc));
        std::exit(1);
    }
    int saved_errno = 0;
    Fd listener;
    for (addrinfo* ai = found; ai != nullptr && !listener; ai = ai->ai_next) {
        int type = ai->ai_socktype | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
        Fd candidate(socket(ai->ai_family, type, ai->ai_protocol));
        int on = 1;
        if (candidate && setsockopt(candidate.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 &&
            bind(candidate.get(), ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(candidate.get(), SOMAXCONN) == 0) {
            listener = std::move(candidate);
        } else {
            saved_errno = errno;
        }
    }
    freeaddrinfo(found);
    if (!listener) {
        std::fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", program_invocation_short_name,
                     options.host.c_str(), options.port.c_str(), std::strerror(saved_errno));
        std::exit(1);
    }
    return listener;
}

void announce(int listen_fd, const char* prefix) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    getsockname(listen_fd, reinterpret_cast<sockaddr*>(&address), &length);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (address.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        port = ntohs(in4->sin_port);
    }
    std::printf("%s %s:%u\n", prefix, host, port);
    std::fflush(stdout);
}

bool write_all(int fd, const void* data, std::size_t len) {
    const char* next = static_cast<const char*>(data);
    while (len > 0) {
        ssize_t n = send(fd, next, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        next += n;
        len -= static_cast<std::size_t>(n);
    }
    return true;
}

bool set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void log_errno(const char* what) {
    std::fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, std::strerror(errno));
}

}  // namespace muxlab
