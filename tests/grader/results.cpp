#include "grader/results.hpp"

#include <cstdio>
#include <ostream>

namespace muxlab::grader {

int LabOutcome::score() const {
    int total = 0;
    for (const TestOutcome& test : tests) total += test.points;
    return total;
}

int LabOutcome::max_score() const {
    int total = 0;
    for (const TestOutcome& test : tests) total += test.max_points;
    return total;
}

int total_score(const std::vector<LabOutcome>& labs) {
    int total = 0;
    for (const LabOutcome& lab : labs) total += lab.score();
    return total;
}

int total_max(const std::vector<LabOutcome>& labs) {
    int total = 0;
    for (const LabOutcome& lab : labs) total += lab.max_score();
    return total;
}

namespace {
/// @p text with every invalid UTF-8 sequence replaced by U+FFFD: a server's
/// stderr may hold any bytes, and JSON and XML readers reject broken UTF-8.
std::string valid_utf8(const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
        unsigned char lead = static_cast<unsigned char>(text[i]);
        size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : (lead >> 3) == 0x1e ? 4 : 0;
        bool ok = length > 0 && i + length <= text.size();
        for (size_t k = 1; ok && k < length; ++k) ok = (static_cast<unsigned char>(text[i + k]) >> 6) == 0x2;
        if (ok) {
            out.append(text, i, length);
            i += length;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}
}  // namespace

std::string json_escape(const std::string& raw) {
    std::string text = valid_utf8(raw);
    std::string out;
    for (unsigned char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20) {
                    char code[8];
                    std::snprintf(code, sizeof code, "\\u%04x", c);
                    out += code;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out;
}

std::string xml_escape(const std::string& raw) {
    std::string text = valid_utf8(raw);
    std::string out;
    for (unsigned char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\n': case '\t': out += static_cast<char>(c); break;
            default:
                if (c >= 0x20) out += static_cast<char>(c);  // XML 1.0 forbids other controls
        }
    }
    return out;
}


void write_gradescope_json(std::ostream& out, const std::vector<LabOutcome>& labs, double seconds) {
    out << "{\n  \"score\": " << total_score(labs) << ",\n  \"max_score\": " << total_max(labs)
        << ",\n  \"execution_time\": " << static_cast<long>(seconds + 0.5) << ",\n  \"output\": \"";
    std::string summary;
    for (const LabOutcome& lab : labs) {
        summary += lab.lab + ": " + std::to_string(lab.score()) + "/" + std::to_string(lab.max_score()) + "\n";
        if (!lab.build_error.empty()) summary += lab.build_error + "\n";
    }
    out << json_escape(summary) << "\",\n  \"visibility\": \"visible\",\n  \"tests\": [";
    bool first = true;
    for (const LabOutcome& lab : labs) {
        for (const TestOutcome& test : lab.tests) {
            out << (first ? "\n" : ",\n");
            first = false;
            // Gradescope knows "passed" and "failed"; a test skipped or not run earned nothing.
            const char* status = test.status == TestOutcome::Status::kPassed ? "passed" : "failed";
            std::string output = test.message;
            if (test.status == TestOutcome::Status::kSkipped) output = "skipped: " + output;
            if (test.status == TestOutcome::Status::kNotRun) output = "not run: " + output;
            out << "    {\"name\": \"" << json_escape(lab.lab + ": " + test.test) << "\", \"score\": "
                << test.points << ", \"max_score\": " << test.max_points << ", \"status\": \"" << status
                << "\", \"output\": \"" << json_escape(output) << "\", \"visibility\": \"visible\"}";
        }
    }
    out << "\n  ]\n}\n";
}

void write_scores(std::ostream& out, const std::vector<LabOutcome>& labs) {
    for (const LabOutcome& lab : labs) {
        const char* state = !lab.build_error.empty()           ? "not-built"
                            : lab.score() == lab.max_score()   ? "passed"
                                                               : "failed";
        out << lab.lab << "," << lab.score() << "," << lab.max_score() << "," << state << "\n";
    }
}

void write_junit_xml(std::ostream& out, const std::vector<LabOutcome>& labs, double seconds) {
    int tests = 0, failures = 0, skipped = 0;
    for (const LabOutcome& lab : labs)
        for (const TestOutcome& test : lab.tests) {
            ++tests;
            failures += test.status == TestOutcome::Status::kFailed;
            skipped += test.status == TestOutcome::Status::kSkipped || test.status == TestOutcome::Status::kNotRun;
        }
    char total_time[32];
    std::snprintf(total_time, sizeof total_time, "%.3f", seconds);
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"muxlab\" tests=\"" << tests
        << "\" failures=\"" << failures << "\" skipped=\"" << skipped << "\" time=\"" << total_time << "\">\n";
    for (const LabOutcome& lab : labs) {
        int lab_failures = 0, lab_skipped = 0;
        double lab_time = 0;
        for (const TestOutcome& test : lab.tests) {
            lab_failures += test.status == TestOutcome::Status::kFailed;
            lab_skipped += test.status == TestOutcome::Status::kSkipped || test.status == TestOutcome::Status::kNotRun;
            lab_time += test.seconds;
        }
        char time_text[32];
        std::snprintf(time_text, sizeof time_text, "%.3f", lab_time);
        out << "  <testsuite name=\"" << xml_escape(lab.lab) << "\" tests=\"" << lab.tests.size()
            << "\" failures=\"" << lab_failures << "\" skipped=\"" << lab_skipped << "\" time=\""
            << time_text << "\">\n";
        out << "    <properties><property name=\"server\" value=\"" << xml_escape(lab.server)
            << "\"/><property name=\"score\" value=\"" << lab.score() << "/" << lab.max_score()
            << "\"/></properties>\n";
        for (const TestOutcome& test : lab.tests) {
            std::snprintf(time_text, sizeof time_text, "%.3f", test.seconds);
            out << "    <testcase classname=\"" << xml_escape(lab.lab) << "\" name=\"" << xml_escape(test.test)
                << "\" time=\"" << time_text << "\"";
            if (test.status == TestOutcome::Status::kPassed) {
                out << "/>\n";
                continue;
            }
            std::string message = test.status == TestOutcome::Status::kNotRun ? "not run: " + test.message : test.message;
            std::string first_line = message.substr(0, message.find('\n'));
            const char* element = test.status == TestOutcome::Status::kFailed ? "failure" : "skipped";
            out << ">\n      <" << element << " message=\"" << xml_escape(first_line) << "\">"
                << xml_escape(message) << "</" << element << ">\n    </testcase>\n";
        }
        out << "  </testsuite>\n";
    }
    out << "</testsuites>\n";
}

}  // namespace muxlab::grader
