/**
 * @file tests/stages/03-threads/contract.cpp
 * @brief Stage 03 contract: a line relay, one thread (or more) per client,
 *        with a client list shared between threads.
 *
 * The relay: every complete LF-terminated line a client sends goes, unchanged
 * and whole, to every other connected client; the sender gets nothing back.
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "harness/battery.hpp"

namespace muxlab::test {
namespace {

/// The hint for a server that closes a connection it should be serving.
const char* const kServeHint =
    "\n  hint: each client must be served on a thread of its own for as long as it stays connected; "
    "its connection stays open until it leaves";

class Threads : public ServerTest {
protected:
    /// Connects @p count clients named `prefix 1`, `prefix 2`... and settles them.
    std::vector<Client> connect_all(int count, const std::string& prefix) {
        std::vector<Client> clients;
        for (int i = 0; i < count; ++i) clients.push_back(connect(prefix + " " + std::to_string(i + 1)));
        std::vector<Client*> group;
        for (Client& client : clients) group.push_back(&client);
        settle(group);
        return clients;
    }

    /**
     * Makes sure every client of @p group is in the server's client list.
     * connect() returns once the kernel has completed the handshake, before
     * the server has accepted the client and registered it, so a line sent at
     * once could miss a newcomer. Here the first client says "sync 0" until all
     * the others heard it, the second says "sync 1" until the first heard it;
     * then both say "sync done" and everyone reads up to it, so no sync line is
     * left for the test to see.
     */
    void settle(const std::vector<Client*>& group) {
        if (group.size() < 2) return;
        for (size_t sender = 0; sender < 2; ++sender) {
            std::string tag = "sync " + std::to_string(sender);
            std::vector<bool> heard(group.size(), false);
            heard[sender] = true;
            Deadline deadline(answer_limit());
            auto everyone = [&] { return std::count(heard.begin(), heard.end(), false) == 0; };
            while (!everyone() && !deadline.expired()) {
                ASSERT_TRUE(group[sender]->send(tag + "\n")) << crash_or(kServeHint) << context();
                Deadline round(Millis(200));
                for (size_t i = 0; i < group.size(); ++i) {
                    std::string line;
                    while (!heard[i] && group[i]->read_line(&line, Millis(round.remaining_ms())))
                        heard[i] = line == tag;
                }
            }
            for (size_t i = 0; i < group.size(); ++i) {
                const Client* closed = closed_by_server(*group[i])        ? group[i]
                                       : closed_by_server(*group[sender]) ? group[sender]
                                                                          : nullptr;
                if (closed) {
                    ASSERT_TRUE(heard[i]) << "the server closed " << closed->name() << "'s connection, "
                                          << "which it never used to relay a line." << crash_or(kServeHint)
                                          << context();
                }
                ASSERT_TRUE(heard[i])
                    << group[sender]->name() << " sent \"" << tag << "\" for " << answer_limit().count()
                    << " ms and " << group[i]->name() << " never received it."
                    << "\n  hint: every line a client sends goes to every other connected client: each "
                       "client must be in the shared list of clients while it is connected (threads "
                       "join, leave and walk that list at once: it needs a lock), and a line goes to "
                       "every client in that list but its sender" << context();
            }
        }
        for (size_t sender = 0; sender < 2; ++sender)
            ASSERT_TRUE(group[sender]->send("sync done " + std::to_string(sender) + "\n"));
        for (size_t i = 0; i < group.size(); ++i) {
            std::set<std::string> due;  // the "sync done" lines i still waits for
            for (size_t sender = 0; sender < 2; ++sender)
                if (sender != i) due.insert("sync done " + std::to_string(sender));
            while (!due.empty()) {
                std::string line;
                ASSERT_TRUE(group[i]->read_line(&line))
                    << group[i]->name() << " never received \"" << *due.begin() << "\"" << context();
                ASSERT_FALSE(line == "sync done " + std::to_string(i))
                    << group[i]->name() << " received its own line \"" << printable(line) << "\" back."
                    << "\n  hint: the sender gets nothing back: relay a line to every client except the "
                       "one that sent it" << context();
                ASSERT_EQ(line.rfind("sync ", 0), 0u)
                    << group[i]->name() << " received \"" << printable(line) << "\", which nobody sent."
                    << "\n  hint: a garbled line means two threads touched one client's outgoing bytes "
                       "at once (its socket or its queue): that needs the client's own lock" << context();
                due.erase(line);
            }
        }
    }

    size_t thread_count() { return proc::threads(server().pid()).size(); }

    /// @p hint, or, when the server has died, what killed it and the hint for a crash while clients join.
    std::string crash_or(const char* hint) {
        auto exit = server().wait_exit(Millis(0));
        if (!exit) return hint;
        return "\n  the server " + exit->describe() + " while clients joined and lines were relayed."
               "\n  hint: the threads that join, leave and relay share state: a lock must guard the "
               "shared list of clients, and each client's outgoing queue needs the client's own lock";
    }

    /// True when the server has closed @p client's connection (end-of-file waits for it).
    static bool closed_by_server(const Client& client) {
        if (!client.unread().empty()) return false;
        char byte;
        return recv(client.fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
};

/// A recognisable line: who sent it, its number, and a body whose content
/// and length (up to 4 KiB with the LF) follow from both.
std::string numbered_line(int sender, int number) {
    std::string head = "from " + std::to_string(sender) + " #" + std::to_string(number) + " ";
    size_t length = 16 + static_cast<size_t>((sender * 7919 + number * 104729) % 4000);
    std::string line = head;
    for (size_t i = line.size(); i < length; ++i) line += static_cast<char>('a' + (i + sender + number) % 26);
    return line;  // without the LF; at most 4016 bytes
}

// ---- the server contract ----------------------------------------------------------

TEST(ThreadsStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(ThreadsStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Threads, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the relay contract ------------------------------------------------------------

TEST_F(Threads, RelaysToEveryOtherClient) {
    std::vector<Client> clients = connect_all(3, "client");
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(clients[0].send("hello from alice\n"));
    for (int who = 1; who <= 2; ++who) {
        std::string line;
        bool got = clients[who].read_line(&line);
        // A sender that got its own lines back may still be draining settle()'s last ones.
        while (got && line.rfind("sync done ", 0) == 0) got = clients[who].read_line(&line);
        ASSERT_TRUE(got) << clients[who].name() << " never received alice's line" << context();
        EXPECT_EQ(line, "hello from alice") << context();
    }
    EXPECT_TRUE(clients[0].expect_silence())
        << "\n  hint: the sender gets nothing back: relay a line to every client except the one "
           "that sent it";
}

TEST_F(Threads, TwoLinesInOneWrite) {
    std::vector<Client> clients = connect_all(2, "client");
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(clients[0].send("first line\nsecond line\n"));
    EXPECT_TRUE(clients[1].expect("first line\nsecond line\n"))
        << "\n  hint: one read() may hold two lines (or one and a half): relay every complete "
           "line it holds and keep the rest for later";
}

TEST_F(Threads, PartialLineWaitsForItsEnd) {
    std::vector<Client> clients = connect_all(2, "client");
    ASSERT_FALSE(HasFatalFailure());
    Client& alice = clients[0];
    Client& bob = clients[1];
    ASSERT_TRUE(alice.send("hel"));
    EXPECT_TRUE(bob.expect_silence())
        << "\n  hint: alice sent \"hel\" without a LF and bob already received something: a line is "
           "relayed only once its LF has arrived (keep the partial line per client)";
    ASSERT_TRUE(alice.send("lo\n"));
    EXPECT_TRUE(bob.expect("hello\n")) << context();
}

TEST_F(Threads, LinesFromTwoSendersNeverMix) {
    std::vector<Client> clients = connect_all(3, "client");
    ASSERT_FALSE(HasFatalFailure());
    Client& alice = clients[0];
    Client& bob = clients[1];
    Client& carol = clients[2];
    ASSERT_TRUE(alice.send("alice says hel"));
    ASSERT_TRUE(carol.expect_silence()) << "\n  hint: half a line must not be relayed yet";
    ASSERT_TRUE(bob.send("bob says hi\n"));
    EXPECT_TRUE(carol.expect_line("bob says hi"))
        << "\n  hint: alice had sent half a line when bob sent a whole one: carol must get bob's "
           "line whole, with nothing of alice's in it";
    ASSERT_TRUE(alice.send("lo\n"));
    EXPECT_TRUE(carol.expect_line("alice says hello")) << context();
    EXPECT_TRUE(bob.expect_line("alice says hello")) << context();
}

TEST_F(Threads, FourKiBLines) {
    std::vector<Client> clients = connect_all(2, "client");
    ASSERT_FALSE(HasFatalFailure());
    std::string lines;
    for (int i = 0; i < 4; ++i) lines += std::string(4095, static_cast<char>('A' + i)) + "\n";
    ASSERT_TRUE(clients[0].send(lines));
    EXPECT_TRUE(clients[1].expect(lines))
        << "\n  hint: lines of up to 4 KiB (4096 bytes with the LF) must be relayed whole"
        << context();
}

TEST_F(Threads, OverlongLineDoesNotDisturbOthers) {
    std::vector<Client> clients = connect_all(3, "client");
    ASSERT_FALSE(HasFatalFailure());
    Client& alice = clients[0];
    Client& bob = clients[1];
    Client& carol = clients[2];
    auto resident_kib = [&] {
        auto field = proc::status_field(server().pid(), "VmRSS");  // "1234 kB"
        return field ? std::strtol(field->c_str(), nullptr, 10) : 0L;
    };
    long memory_before = resident_kib();
    // Up to 16 MiB with no LF, then its LF. The server may drop the line, cut
    // it, or disconnect alice; it must not keep it all, crash, or stop
    // relaying for the others.
    const size_t limit = 16u << 20;
    std::string chunk(1 << 16, 'x');
    size_t sent = 0;
    int quiet_looks = 0;  // consecutive windows in which the server took nothing
    Deadline deadline(answer_limit());
    while (sent < limit && quiet_looks < 2 && !deadline.expired()) {
        size_t now = alice.send_some(chunk);
        sent += now;
        if (now < chunk.size()) {
            pollfd p{alice.fd(), POLLOUT, 0};
            int ready = poll(&p, 1, static_cast<int>(quiet_window().count()));
            if (ready > 0 && (p.revents & (POLLERR | POLLHUP))) break;  // alice was disconnected
            quiet_looks = ready == 0 ? quiet_looks + 1 : 0;
        }
    }
    long growth_kib = resident_kib() - memory_before;
    EXPECT_LT(growth_kib, 4L << 10)
        << "alice sent " << (sent >> 20) << " MiB with no LF, and the server's memory grew by "
        << (growth_kib >> 10) << " MiB: it keeps the whole partial line.\n  hint: bound the partial "
           "line you keep per client (lines up to 4 KiB must work); drop or refuse a longer one"
        << context();
    alice.send("\n", quiet_window());
    ASSERT_TRUE(bob.send("bob is fine\n"));
    std::string line;
    bool found = false;
    Deadline relay_deadline(answer_limit() * 2);
    while (!found && carol.read_line(&line, Millis(relay_deadline.remaining_ms()))) {
        if (line == "bob is fine") found = true;
        else ASSERT_EQ(line.find_first_not_of('x'), std::string::npos)
            << "carol received \"" << printable(line) << "\", which nobody sent" << context();
    }
    EXPECT_TRUE(found) << "after alice sent a " << (sent >> 20) << " MiB line, bob's next line never "
                       << "reached carol.\n  hint: bound the partial line you keep per client (lines "
                          "up to 4 KiB must work); drop or refuse a longer one, and keep serving the "
                          "others" << context();
    EXPECT_FALSE(server().wait_exit(Millis(0)).has_value()) << "the server died" << context();
}

TEST_F(Threads, SurvivesReset) {
    std::vector<Client> clients = connect_all(3, "client");
    ASSERT_FALSE(HasFatalFailure());
    // A client with a tiny receive buffer gets a flood relayed to it and
    // aborts with RST while the server is still writing to it.
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client rude = connect("rude", small_buffer);
    ASSERT_TRUE(rude.send("rude joins\n"));
    ASSERT_TRUE(clients[0].expect_line("rude joins"));
    ASSERT_TRUE(clients[1].expect_line("rude joins"));
    ASSERT_TRUE(clients[2].expect_line("rude joins"));
    std::string chunk;
    for (int i = 0; i < 64; ++i) chunk += std::string(1023, 'r') + "\n";
    for (int round = 0; round < 8; ++round) {
        ASSERT_TRUE(clients[0].send(chunk));
        ASSERT_TRUE(clients[1].expect(chunk)) << context();
        ASSERT_TRUE(clients[2].expect(chunk)) << context();
    }
    ASSERT_TRUE(rude.send("half a line and then RS"));
    rude.reset();
    ASSERT_TRUE(clients[1].send("after the reset\n"));
    bool answered = clients[2].expect_line("after the reset");
    auto exit = server().wait_exit(Millis(0));
    ASSERT_FALSE(exit.has_value())
        << "a client aborted with RST while lines were being relayed to it, and the server "
        << exit->describe()
        << ".\n  hint: writing to a reset connection raises SIGPIPE, which kills the process: use "
           "send(..., MSG_NOSIGNAL) or ignore SIGPIPE, and treat EPIPE/ECONNRESET as the end of "
           "that one client" << context();
    EXPECT_TRUE(answered) << "after one client aborted with RST, the others were not served" << context();
}

TEST_F(Threads, ShortSessionsNoFdGrowth) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> pair = connect_all(2, "listener");
    ASSERT_FALSE(HasFatalFailure());
    Client& listener = pair[0];
    auto count_fds = [&] {
        auto entries = proc::fds(server().pid());
        return entries ? static_cast<long>(entries->size()) : -1L;
    };
    long baseline = count_fds();
    for (int i = 0; i < 200; ++i) {
        Client session = connect("session " + std::to_string(i + 1));
        std::string line = "session " + std::to_string(i + 1);
        ASSERT_TRUE(session.send(line + "\n"));
        ASSERT_TRUE(listener.expect_line(line)) << "(session " << i + 1 << " of 200)" << context();
        session.close();
    }
    long now = count_fds();
    bool settled = eventually(answer_limit(), [&] { return (now = count_fds()) <= baseline + 2; });
    EXPECT_TRUE(settled) << "after 200 short sessions, all closed by the clients, the server holds "
                         << now << " fds (it held " << baseline << " with two clients connected)."
                         << "\n  hint: close each client's socket when the client leaves; see /proc/"
                         << server().pid() << "/fd";
}

// ---- concurrency: many senders, one slow reader ------------------------------------------

// Six clients send 150 lines each, all at the same time, while reading what the
// others send. Every client must receive every line of the five others, whole.
TEST_F(Threads, ManySendersLinesStayWhole) {
    constexpr int kClients = 6;
    constexpr int kLines = 150;
    std::vector<Client> clients = connect_all(kClients, "client");
    auto exit = server().wait_exit(Millis(0));
    ASSERT_FALSE(exit.has_value())
        << "while " << kClients << " clients joined and said hello, the server " << (exit ? exit->describe() : "")
        << ".\n  hint: several threads hand lines to the same client at once: its queue needs the "
           "client's own lock" << context();
    ASSERT_FALSE(HasFatalFailure());
    std::vector<std::string> problems(kClients);
    std::vector<std::thread> workers;
    for (int me = 0; me < kClients; ++me) {
        workers.emplace_back([&, me] {
            Client& client = clients[me];
            std::string outgoing;
            for (int n = 0; n < kLines; ++n) outgoing += numbered_line(me, n) + "\n";
            size_t sent = 0;
            std::map<int, int> next_from;  // sender -> lines received from it
            int received = 0;
            std::string partial;
            Deadline deadline(answer_limit() * 2);
            while (received < (kClients - 1) * kLines && !deadline.expired()) {
                if (sent < outgoing.size())
                    sent += client.send_some(std::string_view(outgoing).substr(sent, 16384));
                partial += client.read_some(1 << 16, Millis(sent < outgoing.size() ? 1 : 50));
                for (size_t lf; (lf = partial.find('\n')) != std::string::npos; partial.erase(0, lf + 1)) {
                    std::string line = partial.substr(0, lf);
                    int sender = -1, number = -1;
                    if (std::sscanf(line.c_str(), "from %d #%d ", &sender, &number) != 2 || sender < 0 ||
                        sender >= kClients || sender == me || number < 0 || number >= kLines ||
                        line != numbered_line(sender, number)) {
                        problems[me] = client.name() + " received a line nobody sent: \"" +
                                       printable(line) + "\"";
                        return;
                    }
                    if (number != next_from[sender]) {
                        problems[me] = client.name() + " received line #" + std::to_string(number) +
                                       " of client " + std::to_string(sender + 1) + " when #" +
                                       std::to_string(next_from[sender]) + " was due (lost or out of order)";
                        return;
                    }
                    ++next_from[sender];
                    ++received;
                }
            }
            if (received < (kClients - 1) * kLines)
                problems[me] = client.name() + " received only " + std::to_string(received) + " of " +
                               std::to_string((kClients - 1) * kLines) + " lines (sent " +
                               std::to_string(sent) + " of its own " + std::to_string(outgoing.size()) +
                               " bytes)";
        });
    }
    for (std::thread& worker : workers) worker.join();
    for (const std::string& problem : problems)
        EXPECT_TRUE(problem.empty())
            << problem
            << "\n  hint: several threads relay lines to the same client at the same time: each "
               "line must reach the socket whole, so whatever a sender touches for another client "
               "(its socket, its queue) needs that client's own lock (a shared registry lock does "
               "not exclude other senders)" << context();
}

// A client that never reads must not freeze the others. The server's writes
// to it block once its buffers are full; that must stall no one else.
TEST_F(Threads, StalledReaderDoesNotFreezeOthers) {
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = connect("alice");
    Client bob = connect("bob");
    Client stalled = connect("stalled (stops reading)", small_buffer);
    settle({&alice, &bob, &stalled});
    ASSERT_FALSE(HasFatalFailure());
    std::string chunk;
    for (int i = 0; i < 64; ++i) chunk += std::string(4095, static_cast<char>('a' + i % 26)) + "\n";
    size_t relayed = 0;
    for (int round = 0; round < 24; ++round) {  // 24 x 256 KiB = 6 MiB, far more than any socket buffer
        ASSERT_TRUE(alice.send(chunk))
            << "\n  hint: alice could not send: the server stopped reading her after " << relayed
            << " bytes while a client that never reads was connected" << context();
        ASSERT_TRUE(bob.expect(chunk))
            << "\n  hint: bob stopped receiving alice's lines after " << relayed
            << " bytes, while a third client that never reads was connected. One stalled reader "
               "freezes everyone when a thread blocks writing to it while holding a lock the "
               "others need (or while it is the only thread that relays). Hold no lock across a "
               "blocking write; give each client its own outgoing queue (and writer)" << context();
        relayed += chunk.size();
    }
    ASSERT_TRUE(bob.send("bob is still here\n"));
    EXPECT_TRUE(alice.expect_line("bob is still here")) << context();
}

TEST_F(Threads, ChurnWhileRelaying) {
    // First a crowd joins, then three steady clients, so that the steady ones
    // sit at the end of the server's client list. The crowd then leaves, one
    // client per batch of lines alice sends: each leave shifts the list while
    // a thread walks it to relay, and a walk the list's lock does not guard
    // skips a steady client or visits one twice.
    constexpr int kCrowd = 100;
    std::vector<Client> crowd = connect_all(kCrowd, "visitor");
    ASSERT_FALSE(HasFatalFailure());
    std::vector<Client> clients = connect_all(3, "steady");
    ASSERT_FALSE(HasFatalFailure());
    const char* const kListHint =
        "\n  hint: a line lost, repeated or garbled while clients come and go: guard the shared list "
        "of clients with a lock (a std::shared_mutex: shared to relay, exclusive to join or leave)";
    for (int round = 0; round < kCrowd; ++round) {
        std::string batch;
        for (int n = 0; n < 20; ++n) batch += "round " + std::to_string(round) + " line " + std::to_string(n) + "\n";
        bool sent = clients[0].send(batch);
        crowd[round].close();
        auto exit = server().wait_exit(Millis(0));
        ASSERT_FALSE(exit.has_value()) << "while " << round + 1 << " of " << kCrowd << " clients left one "
                                       << "by one, the server " << (exit ? exit->describe() : "") << "."
                                       << kListHint << context();
        ASSERT_TRUE(sent) << kListHint << context();
        for (int n = 0; n < 20; ++n) {
            std::string expected = "round " + std::to_string(round) + " line " + std::to_string(n);
            for (int who = 1; who <= 2; ++who) {
                std::string line;
                ASSERT_TRUE(clients[who].read_line(&line))
                    << clients[who].name() << " never received \"" << expected << "\" while clients of "
                    << "the crowd left one by one." << kListHint << context();
                ASSERT_TRUE(line == expected)
                    << clients[who].name() << " expected \"" << expected << "\", got \"" << printable(line)
                    << "\" while clients of the crowd left one by one." << kListHint << context();
            }
        }
    }
    // Two threads connect and disconnect clients as fast as they can (some
    // say a line first) while the steady clients talk: the client list
    // changes under the threads that relay.
    std::atomic<bool> stop{false};
    std::atomic<int> churned{0};
    std::vector<std::thread> churners;
    // A failed check ends the test at once: stop and join the churners on the way out.
    struct JoinOnExit {
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~JoinOnExit() {
            stop = true;
            for (std::thread& thread : threads)
                if (thread.joinable()) thread.join();
        }
    } join_on_exit{stop, churners};
    for (int t = 0; t < 2; ++t) {
        churners.emplace_back([&, t] {
            for (int i = 0; !stop && i < 400; ++i) {
                ::testing::AssertionResult ok = ::testing::AssertionSuccess();
                Client visitor = Client::try_connect(endpoint(), "visitor", &ok);
                if (!ok) return;
                if (i % 2 == 0) visitor.send_some("visitor " + std::to_string(t) + " passing by\n");
                ++churned;
            }
        });
    }
    std::string lines;
    for (int n = 0; n < 40; ++n) lines += numbered_line(0, n) + "\n";
    bool ok = true;
    // Relay for as long as the churn lasts (at least 10 rounds): a race needs
    // the list to change while a line is being relayed, so give it every chance.
    Deadline deadline(answer_limit() * 2);
    for (int round = 0; ok && (round < 10 || (churned < 800 && !deadline.expired())); ++round) {
        ok = clients[0].send(lines);
        for (int n = 0; n < 40 && ok; ++n) {
            for (int who = 1; who <= 2 && ok; ++who) {
                std::string line;
                // Skip the visitors' lines; alice's must all come, in order.
                while ((ok = clients[who].read_line(&line)) && line.rfind("visitor ", 0) == 0) {}
                if (ok && line != numbered_line(0, n)) {
                    EXPECT_TRUE(line == numbered_line(0, n))
                        << clients[who].name() << " expected line #" << n << " of round " << round + 1
                        << ", got \"" << printable(line) << "\" while " << churned << " clients came and "
                        << "went." << kListHint << context();
                    ok = false;
                }
            }
        }
    }
    stop = true;
    for (std::thread& churner : churners) churner.join();
    churners.clear();
    auto exit = server().wait_exit(Millis(0));
    EXPECT_FALSE(exit.has_value())
        << "while " << churned << " clients came and went, the server " << (exit ? exit->describe() : "")
        << ".\n  hint: the list of clients is shared by every thread: joining and leaving change it "
           "while other threads walk it to relay a line. Guard the shared list of clients with a lock "
           "(a std::shared_mutex: shared to relay, exclusive to join or leave)" << context();
    EXPECT_TRUE(ok) << "the steady clients stopped receiving each other's lines while " << churned
                    << " clients came and went." << kListHint << context();
}

// ---- the model: threads, no readiness API ---------------------------------------------

TEST_F(Threads, ThreadsGrowWithClients) {
    MUXLAB_REQUIRE_PROC();
    size_t baseline = thread_count();
    // No relay needed: a thread starts when a client is accepted.
    std::vector<Client> clients;
    for (int i = 0; i < 10; ++i) clients.push_back(connect("client " + std::to_string(i + 1)));
    size_t now = 0;
    bool grown = eventually(answer_limit(), [&] { return (now = thread_count()) >= baseline + 10; });
    EXPECT_TRUE(grown) << "with 10 clients connected the server runs " << now << " threads (" << baseline
                       << " with none); stage 03 gives every client at least one thread of its own"
                       << (now > baseline ? ": a fixed pool of threads leaves every client beyond its size "
                                            "unserved"
                                          : ": start a std::thread for each accepted client");
    auto tree = proc::process_tree(server().pid());
    EXPECT_EQ(tree.size(), 1u) << "the server has " << tree.size() - 1
                               << " child processes; stage 03 uses threads, not processes";
}

TEST_F(Threads, ThreadsReturnToBaseline) {
    MUXLAB_REQUIRE_PROC();
    size_t baseline = thread_count();
    {
        std::vector<Client> clients = connect_all(10, "client");
        ASSERT_FALSE(HasFatalFailure());
        // Some leave politely, some half-close, some abort.
        for (size_t i = 0; i < clients.size(); ++i) {
            if (i % 3 == 0) clients[i].close();
            else if (i % 3 == 1) clients[i].shutdown_write();
            else clients[i].reset();
        }
        // One thread of slack: a runtime may start a helper thread of its own at
        // the first pthread_create (ThreadSanitizer does). A leak costs at least
        // one thread per client, ten here.
        size_t now = 0;
        bool back = eventually(answer_limit(), [&] { return (now = thread_count()) <= baseline + 1; });
        EXPECT_TRUE(back) << "10 clients came and left (closed, half-closed or reset); the server "
                          << "still runs " << now << " threads (" << baseline << " before they came)."
                          << "\n  hint: every thread started for a client must end when the client "
                             "leaves: a reader that sees EOF must also stop the client's other "
                             "threads (and join or detach them); see /proc/" << server().pid() << "/task";
    }
}

TEST_F(Threads, NoSelectPollOrEpoll) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_all(3, "client");
    ASSERT_FALSE(HasFatalFailure());
    const std::set<long> readiness_calls = {
#ifdef SYS_select
        SYS_select,
#endif
        SYS_pselect6, SYS_poll, SYS_ppoll, SYS_epoll_wait, SYS_epoll_pwait,
#ifdef SYS_epoll_pwait2
        SYS_epoll_pwait2,
#endif
    };
    for (pid_t tid : proc::threads(server().pid())) {
        auto idle = proc::idle_syscall(server().pid(), tid);
        if (!idle) continue;  // a thread that ended or never settled
        EXPECT_EQ(readiness_calls.count(*idle), 0u)
            << "thread " << tid << " waits in " << proc::syscall_name(*idle)
            << "; stage 03 is about threads that block in read()/accept() each on their own "
               "socket (select/poll/epoll come in the next stages)";
    }
    auto fds = proc::fds(server().pid());
    ASSERT_TRUE(fds.has_value());
    for (const proc::FdEntry& entry : *fds)
        EXPECT_FALSE(entry.is_epoll()) << "fd " << entry.fd << " is an epoll instance; stage 03 uses none";
}

}  // namespace
}  // namespace muxlab::test
