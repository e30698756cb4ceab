/**
 * @file tools/skeleton.cpp
 * @brief Generates the lab skeletons from the reference solutions.
 *
 * A lab's skeleton is its solution with the lesson taken out. The solution
 * marks what to take out with comment lines that the compiler ignores:
 *
 * @code
 *     //@hole 2 Drain the socket
 *     //@ Edge-triggered epoll reports new bytes once. When is a socket
 *     //@ drained, and what keeps one busy client from starving the others?
 *     //@stub return true;
 *     ... the solution's code ...
 *     //@end
 * @endcode
 *
 * In the skeleton the hole becomes `// TODO 2: Drain the socket`, the `//@ `
 * lines become `// ` comments and the `//@stub` lines become code, each line
 * keeping its own indentation. `//@hole N` without a title removes a region
 * that belongs to TODO N (asked elsewhere); its stubs are still emitted. A
 * file that has no hole but belongs to the lab says so with a `//@lab` line.
 * The file's header comment is rewritten for the lab: the path under labs/,
 * "Lab NN" for "Stage NN", and a pointer to the README instead of the
 * solution's explanation of the lesson.
 *
 *     skeleton [--fill N,N...] [--clean] SOLUTION_FILE [-o OUT]
 *         one file to stdout (or OUT): the skeleton; with --fill, those holes
 *         keep the solution's code (a half-done lab); with --clean, the
 *         solution without its marker lines (for publishing solutions)
 *     skeleton --all [--check] [--root DIR]
 *         every solution file with markers -> labs/NN-name/FILE; with
 *         --check, write nothing and list the skeletons that are stale
 *
 * Exit status: 0 on success, 1 when --check finds stale skeletons or a
 * marker is malformed, 2 on a usage error.
 */
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
    std::set<int> fill;  // holes that keep the solution's code
    bool clean = false;  // strip the markers, keep every line of code
};

/// A malformed marker: file, line and what is wrong.
struct MarkerError {
    std::string text;
};

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw MarkerError{path + ": cannot read"};
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

std::string indentation(const std::string& line) { return line.substr(0, line.find_first_not_of(" \t")); }

/// The marker on @p line ("hole 2 Title", " question", "stub code", "end", "lab"), or nullptr.
bool marker_of(const std::string& line, std::string* marker) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line.compare(start, 3, "//@") != 0) return false;
    *marker = line.substr(start + 3);
    return true;
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

/// "NN" from a path like ".../solutions/08-epoll-et/server.cpp", or "".
std::string lab_number(const std::string& path) {
    size_t at = path.rfind("solutions/");
    if (at == std::string::npos) return "";
    return path.substr(at + 10, 2);
}

/**
 * The skeleton's header comment: the solution's first comment block, with
 * the @file path under labs/, "Lab NN:" for "Stage NN:" in the @brief, and
 * the body replaced by a pointer to the task.
 */
std::vector<std::string> lab_header(const std::vector<std::string>& block, const std::string& number) {
    std::vector<std::string> header = {block.front()};
    bool in_brief = false;
    for (size_t i = 1; i < block.size(); ++i) {
        std::string line = block[i];
        if (line == " *" || line.find("*/") != std::string::npos) {
            if (in_brief) break;
            continue;
        }
        if (size_t at = line.find("@file solutions/"); at != std::string::npos) {
            header.push_back(line.replace(at + 6, 9, "labs"));
        } else if (size_t at = line.find("@brief Stage "); at != std::string::npos) {
            header.push_back(line.replace(at + 7, 5, "Lab"));
            in_brief = true;
        } else if (in_brief) {
            header.push_back(line);
        }
    }
    header.push_back(" *");
    header.push_back(" * Your task is the TODOs in this file, in order: README.md says what each");
    header.push_back(" * one asks. Build with `make labs`, grade with `make grade LAB=" + number + "`.");
    header.push_back(" */");
    return header;
}

/// @p line with a program description's "Stage NN" (the --help text) as "Lab NN".
std::string lab_wording(std::string line) {
    size_t at = line.find("\"Stage ");
    if (at != std::string::npos && at + 9 < line.size() && std::isdigit(static_cast<unsigned char>(line[at + 7])) &&
        std::isdigit(static_cast<unsigned char>(line[at + 8])))
        line.replace(at + 1, 5, "Lab");
    return line;
}

/// Applies the markers of @p path; throws MarkerError on a malformed one.
std::string generate(const std::string& path, const Options& options) {
    std::vector<std::string> lines = read_lines(path);
    std::vector<std::string> out;
    size_t first = 0;
    if (!options.clean && !lines.empty() && starts_with(lines[0], "/**")) {
        size_t end = 0;
        while (end < lines.size() && lines[end].find("*/") == std::string::npos) ++end;
        if (end == lines.size()) throw MarkerError{path + ": the header comment never ends"};
        std::vector<std::string> block(lines.begin(), lines.begin() + static_cast<long>(end) + 1);
        out = lab_header(block, lab_number(path));
        first = end + 1;
    }
    bool in_hole = false, keep_code = true;
    int hole_line = 0;
    for (size_t i = first; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        std::string where = path + ":" + std::to_string(i + 1) + ": ";
        std::string marker;
        if (!marker_of(line, &marker)) {
            if (!in_hole || keep_code) out.push_back(options.clean ? line : lab_wording(line));
            continue;
        }
        std::string indent = indentation(line);
        if (starts_with(marker, "hole ")) {
            if (in_hole) throw MarkerError{where + "a hole inside the hole of line " + std::to_string(hole_line)};
            std::istringstream words(marker.substr(5));
            int number = 0;
            if (!(words >> number) || number < 1) throw MarkerError{where + "expected `//@hole N [title]`"};
            std::string title;
            std::getline(words >> std::ws, title);
            in_hole = true;
            hole_line = static_cast<int>(i + 1);
            keep_code = options.clean || options.fill.count(number) > 0;
            if (!keep_code && !title.empty()) out.push_back(indent + "// TODO " + std::to_string(number) + ": " + title);
        } else if (marker == "end") {
            if (!in_hole) throw MarkerError{where + "`//@end` without a hole"};
            in_hole = false;
        } else if (starts_with(marker, " ") || marker.empty()) {
            if (!in_hole) throw MarkerError{where + "a question line outside a hole"};
            if (!keep_code) out.push_back(indent + "//" + marker);
        } else if (starts_with(marker, "stub")) {
            if (!in_hole) throw MarkerError{where + "a stub outside a hole"};
            std::string code = marker.size() > 5 ? marker.substr(5) : "";
            if (!keep_code) out.push_back(code.empty() ? "" : indent + code);
        } else if (marker == "lab") {
            // the file belongs to the lab; nothing to emit
        } else {
            throw MarkerError{where + "unknown marker `//@" + marker + "`"};
        }
    }
    if (in_hole) throw MarkerError{path + ":" + std::to_string(hole_line) + ": the hole is never closed (`//@end`)"};
    std::string text;
    for (const std::string& line : out) text += line + "\n";
    return text;
}

bool has_markers(const std::string& path) {
    std::ifstream in(path);
    std::string marker;
    for (std::string line; std::getline(in, line);)
        if (marker_of(line, &marker)) return true;
    return false;
}

std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> names;
    if (DIR* listing = opendir(dir.c_str())) {
        while (dirent* entry = readdir(listing))
            if (entry->d_name[0] != '.') names.push_back(entry->d_name);
        closedir(listing);
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return in ? text.str() : std::string("\x01 missing");
}

bool write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    return static_cast<bool>(out);
}

/// --all: every marked solution file to its lab. @return the exit status.
int generate_all(const std::string& root, bool check) {
    int stale = 0;
    for (const std::string& lab : entries(root + "/solutions")) {
        for (const std::string& file : entries(root + "/solutions/" + lab)) {
            std::string source = root + "/solutions/" + lab + "/" + file;
            if (!has_markers(source)) continue;
            std::string target = root + "/labs/" + lab + "/" + file;
            std::string text = generate(source, {});
            if (read_text(target) == text) continue;
            if (check) {
                std::printf("stale: labs/%s/%s (regenerate with `make skeletons`)\n", lab.c_str(), file.c_str());
                ++stale;
            } else {
                mkdir((root + "/labs/" + lab).c_str(), 0755);
                if (!write_text(target, text)) throw MarkerError{target + ": cannot write"};
                std::printf("wrote labs/%s/%s\n", lab.c_str(), file.c_str());
            }
        }
    }
    return stale > 0 ? 1 : 0;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: skeleton [--fill N,N...] [--clean] SOLUTION_FILE [-o OUT]\n"
                 "       skeleton --all [--check] [--root DIR]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    bool all = false, check = false;
    std::string root = ".", input, output;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&] {
            if (i + 1 >= argc) usage();
            return std::string(argv[++i]);
        };
        if (arg == "--all") all = true;
        else if (arg == "--check") check = true;
        else if (arg == "--clean") options.clean = true;
        else if (arg == "--root") root = value();
        else if (arg == "-o") output = value();
        else if (arg == "--fill") {
            std::string list = value();
            for (char& c : list) if (c == ',') c = ' ';
            std::istringstream numbers(list);
            for (int number; numbers >> number;) options.fill.insert(number);
        } else if (!arg.empty() && arg[0] != '-' && input.empty()) input = arg;
        else usage();
    }
    try {
        if (all) return generate_all(root, check);
        if (input.empty()) usage();
        std::string text = generate(input, options);
        if (output.empty()) {
            std::cout << text;
        } else if (!write_text(output, text)) {
            std::fprintf(stderr, "skeleton: cannot write %s\n", output.c_str());
            return 1;
        }
        return 0;
    } catch (const MarkerError& error) {
        std::fprintf(stderr, "skeleton: %s\n", error.text.c_str());
        return 1;
    }
}
