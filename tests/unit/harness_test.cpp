/**
 * @file harness_test.cpp
 * @brief Unit tests of the harness itself: if a probe or the process
 *        handling were wrong, every grade built on it would be wrong too.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "grader/rubric.hpp"
#include "harness/client.hpp"
#include "harness/proc_probe.hpp"
#include "harness/server_process.hpp"
#include "muxlab/fd.hpp"
#include "muxlab/options.hpp"

namespace muxlab::test {
namespace {

/// Writes an executable shell script and removes it at the end of the test.
class Script {
public:
    explicit Script(const std::string& body) {
        char name[] = "/tmp/muxlab-unit-XXXXXX";
        int fd = mkstemp(name);
        path_ = name;
        std::string text = "#!/bin/sh\n" + body + "\n";
        EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
        fchmod(fd, 0700);
        close(fd);
    }
    ~Script() { unlink(path_.c_str()); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

TEST(ServerProcess, ReadsTheReadyLine) {
    Script script("echo 'listening on 127.0.0.1:4242'; exec sleep 60");
    ServerProcess server(script.path());
    ASSERT_TRUE(server.ready()) << server.failure();
    EXPECT_EQ(server.endpoint().host, "127.0.0.1");
    EXPECT_EQ(server.endpoint().port, 4242u);
    ExitReport report = server.stop();
    EXPECT_TRUE(report.signaled && report.signal == SIGTERM) << report.describe();
}

TEST(ServerProcess, ReportsAServerThatExitsEarly) {
    Script script("echo 'cannot bind' >&2; exit 3");
    ServerProcess server(script.path());
    EXPECT_FALSE(server.ready());
    EXPECT_NE(server.failure().find("exited with status 3"), std::string::npos) << server.failure();
    EXPECT_NE(server.failure().find("cannot bind"), std::string::npos) << server.failure();
}

TEST(ServerProcess, RejectsAWrongReadyLine) {
    Script script("echo 'server started on port 5'; exec sleep 60");
    ServerProcess server(script.path());
    EXPECT_FALSE(server.ready());
    EXPECT_NE(server.failure().find("server started on port 5"), std::string::npos) << server.failure();
}

TEST(ServerProcess, ReportsAMissingBinary) {
    ServerProcess server("/nonexistent/muxlab-server");
    EXPECT_FALSE(server.ready());
    EXPECT_NE(server.failure().find("No such file"), std::string::npos) << server.failure();
}

TEST(ServerProcess, InheritsOnlyStandardFds) {
    Fd extra(open("/dev/null", O_RDONLY));  // not close-on-exec: must still not leak into the server
    Script script("echo \"listening on 127.0.0.1:1\"; ls /proc/$$/fd >&2; exec sleep 60");
    ServerProcess server(script.path());
    ASSERT_TRUE(server.ready()) << server.failure();
    ASSERT_TRUE(eventually(answer_limit(), [&] { return server.stderr_text().find('2') != std::string::npos; }));
    // /bin/sh may open its script; nothing at or above the harness's own fd may appear.
    EXPECT_EQ(server.stderr_text().find(std::to_string(extra.get()) + "\n"), std::string::npos)
        << "fds seen by the server: " << server.stderr_text();
}

TEST(ServerProcess, ReapsDescendantsThatLeftTheGroup) {
    become_subreaper();
    Script script("setsid sleep 300 & echo \"$!\" >&2; echo 'listening on 127.0.0.1:1'; exec sleep 60");
    pid_t escaped = 0;
    {
        ServerProcess server(script.path());
        ASSERT_TRUE(server.ready()) << server.failure();
        ASSERT_TRUE(eventually(answer_limit(), [&] { return server.stderr_text().find('\n') != std::string::npos; }));
        escaped = std::atoi(server.stderr_text().c_str());
        ASSERT_GT(escaped, 0);
        server.stop();
    }
    EXPECT_NE(kill(escaped, 0), 0) << "a process that left the server's group survived the stop";
}

TEST(Proc, NamesSystemCalls) {
    EXPECT_EQ(proc::syscall_name(SYS_accept4), "accept4");
    EXPECT_EQ(proc::syscall_name(SYS_epoll_wait), "epoll_wait");
}

TEST(Proc, SeesFdFlagsAndEpollInterest) {
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_NONBLOCK), 0);
    Fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    Fd epoll(epoll_create1(0));
    epoll_event event{};
    event.events = EPOLLIN | EPOLLET;
    ASSERT_EQ(epoll_ctl(epoll.get(), EPOLL_CTL_ADD, read_end.get(), &event), 0);

    auto entries = proc::fds(getpid());
    ASSERT_TRUE(entries.has_value());
    bool saw_pipe = false, saw_epoll = false;
    for (const proc::FdEntry& entry : *entries) {
        if (entry.fd == read_end.get()) {
            saw_pipe = true;
            EXPECT_TRUE(entry.flags & O_NONBLOCK);
        }
        if (entry.fd == epoll.get()) {
            saw_epoll = entry.is_epoll();
            ASSERT_EQ(entry.watches.size(), 1u);
            EXPECT_EQ(entry.watches[0].fd, read_end.get());
            EXPECT_EQ(entry.watches[0].events & (EPOLLIN | EPOLLET), static_cast<uint32_t>(EPOLLIN | EPOLLET));
        }
    }
    EXPECT_TRUE(saw_pipe);
    EXPECT_TRUE(saw_epoll);
}

/// Runs @p body in a child process, returns its pid (killed and reaped by the caller).
template <typename Body>
pid_t spawn(Body body) {
    pid_t pid = fork();
    if (pid == 0) {
        body();
        _exit(0);
    }
    return pid;
}

void finish(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
}

TEST(Proc, SeesTheSyscallAnIdleProcessBlocksIn) {
    pid_t child = spawn([] { pause(); });
    auto idle = proc::idle_syscall(child, child);
    finish(child);
    ASSERT_TRUE(idle.has_value());
    EXPECT_EQ(*idle, SYS_pause);
}

TEST(Proc, TellsIdleFromBusy) {
    pid_t sleeper = spawn([] { pause(); });
    pid_t spinner = spawn([] { for (volatile unsigned long i = 0;; i = i + 1) {} });
    pid_t ticker = spawn([] { for (;;) usleep(1000); });
    auto quiet = proc::idle_activity(sleeper, Millis(500));
    auto busy = proc::idle_activity(spinner, Millis(500));
    auto waking = proc::idle_activity(ticker, Millis(500));
    finish(sleeper);
    finish(spinner);
    finish(ticker);
    ASSERT_TRUE(quiet && busy && waking);
    EXPECT_EQ(*quiet, "");
    EXPECT_NE(busy->find("busy loop"), std::string::npos) << *busy;
    EXPECT_NE(waking->find("woke up"), std::string::npos) << *waking;
}

TEST(Client, PrintableEscapesBytes) {
    EXPECT_EQ(printable(std::string("a\n\0\xff", 4)), "\"a\\n\\x00\\xff\"");
    EXPECT_NE(printable(std::string(200, 'x'), 10).find("(200 bytes)"), std::string::npos);
}

TEST(Options, ParsesTheSharedCommandLine) {
    long max_clients = 10;
    const char* argv[] = {"server", "-H", "::1", "-p", "0", "--max-clients", "5", nullptr};
    Options options = parse_options(7, const_cast<char**>(argv), "test",
                                    {{"max-clients", "limit", &max_clients, 1, 100}});
    EXPECT_EQ(options.host, "::1");
    EXPECT_EQ(options.port, "0");
    EXPECT_EQ(max_clients, 5);
}

TEST(Options, BadOptionsExitWithStatusTwo) {
    const char* unknown[] = {"server", "--bogus", nullptr};
    EXPECT_EXIT(parse_options(2, const_cast<char**>(unknown), "test"), ::testing::ExitedWithCode(2), "unknown option");
    const char* bad_port[] = {"server", "-p", "70000", nullptr};
    EXPECT_EXIT(parse_options(3, const_cast<char**>(bad_port), "test"), ::testing::ExitedWithCode(2), "bad port");
}

TEST(Rubric, ParsesLabsAndPoints) {
    grader::Rubric rubric;
    std::string error;
    ASSERT_TRUE(rubric.parse("# comment\nlab 02-fork\nFork.A 3\nFork.B 4  # why\nlab 01-iterative\nIt.C 1\n", &error)) << error;
    ASSERT_EQ(rubric.labs.size(), 2u);
    EXPECT_EQ(rubric.labs[0].name, "01-iterative");  // sorted by name
    EXPECT_EQ(rubric.find_lab("02")->max_points(), 7);
    EXPECT_EQ(rubric.lab_of("Fork.B")->name, "02-fork");
    EXPECT_FALSE(grader::Rubric().parse("Fork.A 3\n", &error));  // a test before any lab
}

TEST(Rubric, TheShippedRubricParses) {
    grader::Rubric rubric;
    std::string error;
    EXPECT_TRUE(rubric.parse(grader::kRubricText, &error)) << error;
    EXPECT_FALSE(rubric.labs.empty());
}

}  // namespace
}  // namespace muxlab::test
