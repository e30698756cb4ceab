/**
 * @file fd.hpp
 * @brief RAII ownership of one file descriptor.
 */
#pragma once

#include <unistd.h>

#include <utility>

namespace muxlab {

/**
 * @brief Owns one file descriptor and closes it when it goes out of scope.
 *
 * Move-only, like std::unique_ptr: exactly one Fd owns a descriptor at a time,
 * so a descriptor is closed exactly once, on every path (return, exception,
 * early `continue`). An Fd holding -1 owns nothing.
 */
class Fd {
public:
    Fd() = default;
    /// Takes ownership of @p fd (which may be -1).
    explicit Fd(int fd) noexcept : fd_(fd) {}
    ~Fd() { reset(); }

    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    /// The descriptor, still owned by this object.
    int get() const noexcept { return fd_; }
    /// True when a descriptor is owned.
    explicit operator bool() const noexcept { return fd_ >= 0; }

    /// Gives up ownership without closing; returns the descriptor.
    int release() noexcept { return std::exchange(fd_, -1); }

    /// Closes the owned descriptor (if any) and takes ownership of @p fd.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

}  // namespace muxlab
