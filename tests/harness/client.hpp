/**
 * @file client.hpp
 * @brief A test client: one real TCP socket, with every wait bounded by a deadline.
 */
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "harness/endpoint.hpp"
#include "harness/timing.hpp"

namespace muxlab::test {

/// How to connect a Client.
struct ConnectOptions {
    int receive_buffer = 0;     ///< SO_RCVBUF before connect (0: the default); small = a slow reader
    std::string source_address; ///< bind to this local address first (e.g. "127.0.0.2")
};

/**
 * @brief One client connection. Checks return `testing::AssertionResult`, so a
 *        test reads as the scenario and a failure says what came back:
 *
 * @code
 *   Client alice = Client::connect(server.endpoint(), "alice");
 *   ASSERT_TRUE(alice.send("hello\n"));
 *   EXPECT_TRUE(alice.expect("hello\n")) << "hint for the student";
 * @endcode
 *
 * The socket is non-blocking inside; every wait uses poll() with a deadline,
 * so a silent server makes a test fail, never hang.
 */
class Client {
public:
    /// Connects to @p server; @p name labels this client in failure messages.
    /// Throws std::runtime_error when the connection cannot be made in time.
    static Client connect(const Endpoint& server, std::string name = "client",
                          const ConnectOptions& options = {});

    /// Like connect(), but reports failure as an AssertionResult in @p result.
    static Client try_connect(const Endpoint& server, std::string name,
                              ::testing::AssertionResult* result,
                              const ConnectOptions& options = {});

    Client(Client&& other) noexcept;
    Client& operator=(Client&& other) noexcept;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    ~Client();

    /// The label given at connect().
    const std::string& name() const { return name_; }
    /// The socket (for probes that need the local port, etc.).
    int fd() const { return fd_; }
    /// The local port of this connection.
    unsigned local_port() const;

    /// Sends every byte of @p data, waiting for the server to read while
    /// its buffers are full, for at most @p within.
    ::testing::AssertionResult send(std::string_view data, Millis within = answer_limit());
    /// Sends as much of @p data as the socket takes now, without waiting; returns the count.
    size_t send_some(std::string_view data);

    /// Reads exactly expected.size() bytes and compares them with @p expected.
    ::testing::AssertionResult expect(std::string_view expected, Millis within = answer_limit());
    /// Reads one line (up to and including LF) and compares it with @p line + "\n".
    ::testing::AssertionResult expect_line(std::string_view line, Millis within = answer_limit());
    /// Reads until the server closes the connection (EOF or reset) with no more data.
    ::testing::AssertionResult expect_closed(Millis within = answer_limit());
    /// Passes when nothing arrives (and the connection stays open) for @p window.
    ::testing::AssertionResult expect_silence(Millis window = quiet_window());

    /// Reads up to @p count bytes, waiting at most @p within for the first byte.
    std::string read_some(size_t count, Millis within);
    /// Reads one line without its LF; false if none arrived in time.
    bool read_line(std::string* line, Millis within = answer_limit());
    /// Bytes already received but not yet consumed by an expect/read call.
    const std::string& unread() const { return pending_; }
    /// True once a read has seen the connection end (EOF from the server, or a reset).
    bool closed() const { return eof_ || error_ != 0; }

    /// Half-closes: shutdown(SHUT_WR); the server reads end-of-file.
    void shutdown_write();
    /// Aborts the connection with RST (SO_LINGER 0, then close).
    void reset();
    /// Closes the connection normally.
    void close();

private:
    Client(int fd, std::string name);
    /// Waits until pending_ holds @p count bytes or EOF/error/deadline.
    void fill(size_t count, const Deadline& deadline);
    /// Describes bytes for a failure message (escaped, abbreviated).
    static std::string show(std::string_view bytes);

    int fd_ = -1;
    std::string name_;
    std::string pending_;
    bool eof_ = false;
    int error_ = 0;
};

/// Escapes @p bytes for a failure message: "hello\n", "\x00\xff", abbreviated when long.
std::string printable(std::string_view bytes, size_t limit = 80);

}  // namespace muxlab::test
