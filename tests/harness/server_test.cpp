#include "harness/server_test.hpp"

namespace muxlab::test {
namespace {
std::string& server_path() {
    static std::string path;
    return path;
}
}  // namespace

const std::string& server_under_test() { return server_path(); }
void set_server_under_test(const std::string& path) { server_path() = path; }

void ServerTest::SetUp() { restart(launch_options()); }

void ServerTest::TearDown() {
    if (server_) server_->stop();
}

void ServerTest::restart(const LaunchOptions& options) {
    server_.reset();
    server_ = std::make_unique<ServerProcess>(server_under_test(), options);
    if (!server_->ready()) {
        std::string flags;
        for (const std::string& arg : options.args) flags += " " + arg;
        ADD_FAILURE() << "the server did not start" << (flags.empty() ? "" : " with" + flags) << ": "
                      << server_->failure();
    }
}

Client ServerTest::connect(const std::string& name, const ConnectOptions& options) {
    ::testing::AssertionResult result = ::testing::AssertionSuccess();
    Client client = Client::try_connect(endpoint(), name, &result, options);
    EXPECT_TRUE(result) << context();
    return client;
}

std::vector<Client> ServerTest::connect_served(int count, const std::string& prefix) {
    std::vector<Client> clients;
    for (int i = 0; i < count; ++i) {
        clients.push_back(connect(prefix + " " + std::to_string(i + 1)));
        std::string hello = "hello from " + clients.back().name() + "\n";
        ::testing::AssertionResult echoed = clients.back().send(hello);
        if (echoed) echoed = clients.back().expect(hello);
        if (!echoed) {
            ADD_FAILURE() << echoed.message() << "\n  (connecting " << count
                          << " clients, each echoing one line first)" << context();
            break;
        }
    }
    return clients;
}

void ServerTest::require_proc() {
    if (!proc::readable(server_->pid()))
        GTEST_SKIP() << "model check skipped: cannot read /proc/" << server_->pid()
                     << " (run the grader as the same user as the server, without a restricted /proc)";
}

std::string ServerTest::context() const { return server_ ? server_->stderr_tail() : ""; }

std::string binary_payload(size_t size, unsigned seed) {
    std::string data(size, '\0');
    unsigned state = seed * 2654435761u + 1;
    for (size_t i = 0; i < size; ++i) {
        state = state * 1103515245u + 12345u;
        data[i] = static_cast<char>((i < 256 ? i : (state >> 16)) & 0xff);
    }
    return data;
}

}  // namespace muxlab::test
