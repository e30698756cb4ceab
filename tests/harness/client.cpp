#include "harness/client.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <utility>

namespace muxlab::test {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

std::string printable(std::string_view bytes, size_t limit) {
    std::string text = "\"";
    for (size_t i = 0; i < bytes.size() && i < limit; ++i) {
        unsigned char c = static_cast<unsigned char>(bytes[i]);
        if (c == '\n') text += "\\n";
        else if (c == '\r') text += "\\r";
        else if (c == '\t') text += "\\t";
        else if (c == '"' || c == '\\') text += std::string("\\") + static_cast<char>(c);
        else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            text += hex;
        } else text += static_cast<char>(c);
    }
    text += "\"";
    if (bytes.size() > limit) text += "... (" + std::to_string(bytes.size()) + " bytes)";
    return text;
}

std::string Client::show(std::string_view bytes) { return printable(bytes); }

Client::Client(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      name_(std::move(other.name_)),
      pending_(std::move(other.pending_)),
      eof_(other.eof_),
      error_(other.error_) {}

Client& Client::operator=(Client&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        name_ = std::move(other.name_);
        pending_ = std::move(other.pending_);
        eof_ = other.eof_;
        error_ = other.error_;
    }
    return *this;
}

Client::~Client() { close(); }

Client Client::try_connect(const Endpoint& server, std::string name, AssertionResult* result,
                           const ConnectOptions& options) {
    *result = AssertionSuccess();
    sockaddr_storage address{};
    socklen_t length = 0;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (inet_pton(AF_INET, server.host.c_str(), &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(static_cast<uint16_t>(server.port));
        length = sizeof *in4;
    } else if (inet_pton(AF_INET6, server.host.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<uint16_t>(server.port));
        length = sizeof *in6;
    } else {
        *result = AssertionFailure() << "cannot parse the server address '" << server.host << "'";
        return Client(-1, std::move(name));
    }
    int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *result = AssertionFailure() << name << ": socket: " << std::strerror(errno)
                                     << " (the test itself ran out of file descriptors?)";
        return Client(-1, std::move(name));
    }
    Client client(fd, std::move(name));
    if (options.receive_buffer > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.receive_buffer, sizeof options.receive_buffer);
    if (!options.source_address.empty()) {
        sockaddr_in local{};
        local.sin_family = AF_INET;
        inet_pton(AF_INET, options.source_address.c_str(), &local.sin_addr);
        if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
            *result = AssertionFailure() << client.name_ << ": bind " << options.source_address
                                         << ": " << std::strerror(errno);
            return client;
        }
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 && errno != EINPROGRESS) {
        *result = AssertionFailure() << client.name_ << " could not connect to " << server.host
                                     << ":" << server.port << ": " << std::strerror(errno);
        return client;
    }
    // On loopback the handshake completes in the kernel even when the server
    // never calls accept() (the connection waits in the listen backlog).
    pollfd p{fd, POLLOUT, 0};
    int ready = poll(&p, 1, answer_limit().count());
    int error = 0;
    socklen_t error_length = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length);
    if (ready != 1 || error != 0) {
        *result = AssertionFailure() << client.name_ << " could not connect to " << server.host
                                     << ":" << server.port << ": "
                                     << (ready != 1 ? "timed out" : std::strerror(error))
                                     << " (is the server still running? is its listen backlog full?)";
    }
    return client;
}

Client Client::connect(const Endpoint& server, std::string name, const ConnectOptions& options) {
    AssertionResult result = AssertionSuccess();
    Client client = try_connect(server, std::move(name), &result, options);
    if (!result) throw std::runtime_error(result.message());
    return client;
}

unsigned Client::local_port() const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

size_t Client::send_some(std::string_view data) {
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        sent += static_cast<size_t>(n);
    }
    return sent;
}

AssertionResult Client::send(std::string_view data, Millis within) {
    Deadline deadline(within);
    size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) {
            return AssertionFailure() << name_ << " could not send (" << std::strerror(errno)
                                      << ") after " << sent << " of " << data.size()
                                      << " bytes: the server closed or reset the connection";
        }
        // Our send buffer is full: the server is not reading. Keep what it
        // already echoed in pending_ so our own receive buffer never fills up.
        pollfd p{fd_, POLLOUT | POLLIN, 0};
        if (poll(&p, 1, deadline.remaining_ms()) == 0 && deadline.expired()) {
            return AssertionFailure() << name_ << " sent " << sent << " of " << data.size()
                                      << " bytes, then the server stopped reading for "
                                      << within.count() << " ms";
        }
        if (p.revents & POLLIN) {
            char buffer[65536];
            ssize_t got = recv(fd_, buffer, sizeof buffer, 0);
            if (got > 0) pending_.append(buffer, static_cast<size_t>(got));
            else if (got == 0) eof_ = true;
        }
    }
    return AssertionSuccess();
}

void Client::fill(size_t count, const Deadline& deadline) {
    char buffer[65536];
    while (pending_.size() < count && !eof_ && error_ == 0) {
        ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
        if (n > 0) {
            pending_.append(buffer, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) {
            eof_ = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
            error_ = errno;
            break;
        }
        if (deadline.expired()) break;
        pollfd p{fd_, POLLIN, 0};
        poll(&p, 1, deadline.remaining_ms());
    }
}

AssertionResult Client::expect(std::string_view expected, Millis within) {
    Deadline deadline(within);
    // Read in steps so a wrong byte is reported as soon as it arrives.
    size_t checked = 0;
    while (checked < expected.size()) {
        fill(checked + 1, deadline);
        size_t have = std::min(pending_.size(), expected.size());
        for (; checked < have; ++checked) {
            if (pending_[checked] != expected[checked]) {
                std::string got = pending_.substr(0, std::min(pending_.size(), expected.size()));
                size_t from = checked > 20 ? checked - 20 : 0;
                return AssertionFailure()
                       << name_ << " expected " << show(expected) << " but byte " << checked
                       << " differs: got " << show(std::string_view(got).substr(from))
                       << " where " << show(expected.substr(from, got.size() - from))
                       << " was due (bytes from offset " << from << ")";
            }
        }
        if (checked < expected.size() && pending_.size() <= checked) {
            if (eof_ || error_ != 0 || deadline.expired()) {
                std::string why = eof_ ? "then the server closed the connection"
                                  : error_ != 0 ? std::string("then the connection failed: ") + std::strerror(error_)
                                                : "then nothing more arrived for " + std::to_string(within.count()) + " ms";
                return AssertionFailure() << name_ << " expected " << expected.size() << " bytes "
                                          << show(expected) << " but received only " << checked
                                          << (checked > 0 ? " (" + show(pending_.substr(0, checked)) + ")" : "")
                                          << ", " << why;
            }
        }
    }
    pending_.erase(0, expected.size());
    return AssertionSuccess();
}

AssertionResult Client::expect_line(std::string_view line, Millis within) {
    std::string got;
    if (!read_line(&got, within)) {
        std::string why = eof_ ? "the server closed the connection"
                          : error_ != 0 ? std::string("the connection failed: ") + std::strerror(error_)
                                        : "nothing complete arrived for " + std::to_string(within.count()) + " ms";
        return AssertionFailure() << name_ << " expected the line " << show(std::string(line) + "\n")
                                  << " but " << why
                                  << (pending_.empty() ? "" : " (partial data: " + show(pending_) + ")");
    }
    if (got != line)
        return AssertionFailure() << name_ << " expected the line " << show(std::string(line) + "\n")
                                  << " but got " << show(got + "\n");
    return AssertionSuccess();
}

bool Client::read_line(std::string* line, Millis within) {
    Deadline deadline(within);
    size_t newline;
    while ((newline = pending_.find('\n')) == std::string::npos) {
        size_t before = pending_.size();
        fill(before + 1, deadline);
        if (pending_.size() == before) return false;
    }
    *line = pending_.substr(0, newline);
    pending_.erase(0, newline + 1);
    return true;
}

std::string Client::read_some(size_t count, Millis within) {
    Deadline deadline(within);
    if (pending_.empty()) fill(1, deadline);
    fill(std::min(count, pending_.size() + 65536), Deadline(Millis(0)));
    std::string taken = pending_.substr(0, std::min(count, pending_.size()));
    pending_.erase(0, taken.size());
    return taken;
}

AssertionResult Client::expect_closed(Millis within) {
    Deadline deadline(within);
    while (!eof_ && error_ == 0 && !deadline.expired()) fill(pending_.size() + 65536, deadline);
    if (!pending_.empty()) {
        std::string extra = std::exchange(pending_, {});
        return AssertionFailure() << name_ << " expected the server to close the connection, but "
                                  << "first received " << show(extra);
    }
    if (!eof_ && error_ == 0)
        return AssertionFailure() << name_ << " expected the server to close the connection within "
                                  << within.count() << " ms, but it stayed open";
    return AssertionSuccess();
}

AssertionResult Client::expect_silence(Millis window) {
    Deadline deadline(window);
    while (!deadline.expired() && pending_.empty() && !eof_ && error_ == 0) fill(1, deadline);
    if (!pending_.empty())
        return AssertionFailure() << name_ << " expected nothing, but received " << show(pending_);
    if (eof_) return AssertionFailure() << name_ << " expected the connection to stay open, but the server closed it";
    if (error_ != 0)
        return AssertionFailure() << name_ << " expected the connection to stay open, but it failed: "
                                  << std::strerror(error_);
    return AssertionSuccess();
}

void Client::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Client::reset() {
    if (fd_ < 0) return;
    linger abort_now{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
    close();
}

void Client::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

}  // namespace muxlab::test
