/**
 * @file diagnosis.hpp
 * @brief What a failing server looks like from outside, for hints that fit.
 *
 * A test knows what it expected; the kernel knows what the server did with
 * it. When a test fails, the grader asks the kernel (through /proc) for the
 * states that usually explain the failure, so the student reads what was
 * seen in *their* server rather than a guess:
 *
 * - connections waiting in the listening socket's accept queue (never accepted),
 * - bytes the clients sent that sit unread in the server's receive queues,
 * - connections the client has shut down that the server has not closed
 *   (CLOSE_WAIT: end-of-file never read, or read and ignored),
 * - the system call the server's main thread is blocked in, and on which fd.
 */
#pragma once

#include <sys/types.h>

#include <string>

namespace muxlab::test {

/**
 * @brief Describes the socket states of server @p root (and of the processes
 *        it started) that explain most failures, one line per finding.
 *
 * Empty when nothing unusual is seen or /proc cannot be read.
 */
std::string seen_from_outside(pid_t root);

/**
 * @brief Records seen_from_outside() of every running server as a note for
 *        the grader (sandbox event), once per test: called at the first
 *        failure, while the test's clients are still connected.
 */
void note_server_state();

}  // namespace muxlab::test
