import Foundation
import RouterdTestSupport
import Testing

/// docs/TUTORIAL.md, run as written: every ```sh block, in order, in one bash, against the
/// local llama.cpp server. A step that fails fails the test, so the page stays true.
@Suite(
    .timeLimit(.minutes(10)),
    .enabled(
        if: ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"] != nil && EncoderFixture.modelIsPresent,
        Comment(rawValue: "needs the encoder model and ROUTERD_TEST_LLM_URL (run `make test-llm`)")))
struct TutorialTests {
    static func shellBlocks(of page: String) throws -> [String] {
        let text = try String(contentsOfFile: Package.root + "/" + page, encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```sh" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test func theTutorialRunsAsWritten() throws {
        let blocks = try Self.shellBlocks(of: "docs/TUTORIAL.md")
        #expect(blocks.count == 7, "the tutorial's seven steps")
        let work = try TemporaryDirectory()
        let binaries = URL(fileURLWithPath: try Package.binary("routerd")).deletingLastPathComponent().path
        let script = "set -euo pipefail\n" + blocks.joined(separator: "\n")
        defer {
            // If a step failed, the daemon it started is still running.
            for file in ["routerd.pid", "cold.pid"] {
                if let pid = try? String(contentsOfFile: work.path + "/tutorial/" + file, encoding: .utf8),
                    let number = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines))
                {
                    kill(number, SIGKILL)
                }
            }
        }
        let run = try runCommand(
            "/bin/bash", ["-c", "cd \"$0\" && " + script, Package.root],
            environment: [
                "WORK": work.path + "/tutorial", "BIN": binaries, "LLM": ProcessInfo.processInfo.environment["ROUTERD_TEST_LLM_URL"]!,
            ])
        #expect(run.status == 0, "stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        let folder = work.path + "/tutorial"
        func lines(_ file: String) -> Int {
            ((try? String(contentsOfFile: folder + "/" + file, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
        #expect(lines("labels.jsonl") == 6, "one battles row per distinct routed prompt")
        #expect(lines("feedback/battles.jsonl") == 1 && lines("feedback/quality.jsonl") == 2)
        #expect(run.stdout.contains("router mine forgot what it learned online"), "\(run.stdout)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/feedback/learned/mine/learned.safetensors"))
        // Step 7: the cold router learned from one-sided outcomes until a proof went to `large`.
        #expect(lines("cold-feedback/quality.jsonl") == 12)
        #expect(run.stdout.contains("small  (policy lambda)"), "cold, the cheapest wins: \(run.stdout)")
        let last = run.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("→ large"), "after the outcomes, a proof goes to large: \(run.stdout)")
    }
}
