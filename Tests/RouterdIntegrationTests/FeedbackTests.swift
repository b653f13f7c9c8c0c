import Foundation
import RouterEvaluation
import RouterProtocol
import RouterTraining
import RouterdTestSupport
import Synchronization
import Testing
import TrainingRows

/// Outcome feedback through the real daemon: decision ids, the `feedback` op, the rows it
/// writes in the training formats, what it refuses, who may send it, and durability.
@Suite(.timeLimit(.minutes(10))) struct FeedbackTests {
    static let strong = TestConfig.strong
    static let weak = TestConfig.weak

    static func feedbackSection(_ directory: String, extra: String = "") -> String {
        """
        feedback:
          directory: \(directory)
          sync_interval_ms: 2
        \(extra)
        """
    }

    static func daemon(in directory: TemporaryDirectory = try! TemporaryDirectory(), extra: String = "", mode: String = "0660") throws -> Daemon {
        let store = directory.path + "/feedback"
        return try Daemon(
            directory: directory, config: { TestConfig.yaml(socket: $0, mode: mode, extra: Self.feedbackSection(store, extra: extra)) })
    }

    static func lines(_ path: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
    }

    @Test func feedbackNamesADecisionAndLandsInTheTrainingFormats() throws {
        let daemon = try Self.daemon()
        let store = daemon.directory.path + "/feedback"
        let connection = try daemon.connect()
        let decision = try connection.request(#"{"op":"route","router":"random","prompt":"Prove that there are infinitely many primes."}"#)
        let id = try #require(decision.result["decision_id"] as? String)
        #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(id)")
        let other = try connection.request(#"{"op":"route","router":"random","prompt":"hi"}"#).result["decision_id"] as? String
        #expect(other != id, "every decision gets its own id")

        let pairwise = try connection.request(
            #"{"op":"feedback","id":1,"decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"win","against":"\#(Self.weak)"}"#)
        #expect(pairwise.ok, "\(pairwise)")
        #expect(pairwise["id"] as? Int == 1)
        #expect(pairwise.result["recorded"] as? String == "battles" && pairwise.result["decision_id"] as? String == id)
        let pointwise = try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.weak)","quality":0.25}"#)
        #expect(pointwise.result["recorded"] as? String == "quality", "\(pointwise)")
        // A late outcome names the router and the prompt instead.
        let late = try connection.request(#"{"op":"feedback","router":"random","prompt":"What is 2+2?","model":"\#(Self.strong)","quality":1}"#)
        #expect(late.ok && late.result["decision_id"] == nil, "\(late)")

        // The rows are the trainers' formats, read by the trainers' own readers.
        let battles = try BattlesReader.read(file: store + "/battles.jsonl")
        #expect(battles.count == 1)
        #expect(battles.first?.prompt == "Prove that there are infinitely many primes.")
        #expect(battles.first?.modelA == Self.strong && battles.first?.modelB == Self.weak && battles.first?.outcome == .modelA)
        let quality = try QualityFile.read(store + "/quality.jsonl")
        #expect(quality.map(\.prompt) == ["Prove that there are infinitely many primes.", "What is 2+2?"])
        #expect(quality.map(\.quality) == [[Self.weak: 0.25], [Self.strong: 1]])
        let row = try #require(Self.lines(store + "/battles.jsonl").first)
        #expect(row["decision_id"] as? String == id && row["router"] as? String == "random" && row["source"] as? String == "feedback")

        // A failed call (issue 24): quality 0 in the quality file, marked, and counted apart.
        let failed = try connection.request(#"{"op":"feedback","decision_id":"\#(try #require(other))","model":"\#(Self.weak)","outcome":"failed"}"#)
        #expect(failed.ok && failed.result["recorded"] as? String == "quality", "\(failed)")
        let failedRow = try #require(Self.lines(store + "/quality.jsonl").last)
        #expect(failedRow["outcome"] as? String == "failed" && (failedRow["quality"] as? [String: Double]) == [Self.weak: 0], "\(failedRow)")
        #expect(try QualityFile.read(store + "/quality.jsonl").last?.quality == [Self.weak: 0])

        let stats = try connection.request(#"{"op":"stats"}"#).result
        let feedback = try #require(stats["feedback"] as? [String: Any])
        #expect(feedback["rows"] as? Int == 4, "\(feedback)")
        #expect((feedback["syncs"] as? Int ?? 0) >= 1)
        #expect(feedback["decisions_remembered"] as? Int == 2)
        #expect((stats["requests"] as? [String: Int])?["feedback"] == 4)
        let router = try #require((stats["routers"] as? [String: Any])?["random"] as? [String: Any])
        #expect(router["outcomes"] as? Int == 4 && router["failed_outcomes"] as? Int == 1, "\(router)")
    }

    /// A router that explores logs with each decision the probability its model was chosen with
    /// (issue 24): in the route reply, the decision log and the feedback rows, and `stats` shows
    /// the share explored.
    @Test func anExploringRouterLogsEveryDecisionsPropensity() throws {
        let directory = try TemporaryDirectory()
        let store = directory.path + "/feedback"
        let router = TestConfig.randomRouter() + "\n    explore: {epsilon: 0.5, seed: 4}"
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0, routers: router,
                    extra: Self.feedbackSection(store) + "\ndecision_log:\n  path: \(directory.path)/decisions.jsonl")
            })
        let connection = try daemon.connect()
        var replies: [[String: Any]] = []
        for index in 0..<40 {
            let reply = try connection.request(#"{"op":"route","router":"random","prompt":"question \#(index)"}"#).result
            #expect(reply["propensity"] as? Double == 0.5 && reply["explored"] is Bool, "\(reply)")
            replies.append(reply)
        }
        let explored = replies.filter { $0["explored"] as? Bool == true }.count
        #expect(explored > 5 && explored < 35, "\(explored) of 40 explored with ε 0.5")
        let logged = Self.lines(directory.path + "/decisions.jsonl")
        #expect(logged.count == 40 && logged.allSatisfy { $0["propensity"] as? Double == 0.5 && $0["explored"] is Bool })
        #expect(zip(logged, replies).allSatisfy { $0["explored"] as? Bool == $1["explored"] as? Bool })
        // The outcome row carries what an off-policy estimate needs.
        let id = try #require(replies[0]["decision_id"] as? String)
        let model = try #require(replies[0]["model"] as? String)
        #expect(try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(model)","quality":1}"#).ok)
        let row = try #require(Self.lines(store + "/quality.jsonl").last)
        #expect(row["propensity"] as? Double == 0.5 && row["explored"] as? Bool == replies[0]["explored"] as? Bool, "\(row)")
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let exploration = try #require(((stats["routers"] as? [String: Any])?["random"] as? [String: Any])?["exploration"] as? [String: Any])
        #expect(exploration["drawn"] as? Int == 40 && exploration["explored"] as? Int == explored && exploration["epsilon"] as? Double == 0.5)
        #expect(abs((exploration["share"] as? Double ?? -1) - Double(explored) / 40) < 1e-9, "\(exploration)")
    }

    @Test func badFeedbackGetsAStableErrorAndNothingIsWritten() throws {
        let daemon = try Self.daemon(extra: "  decisions: {ttl: 1}")
        let store = daemon.directory.path + "/feedback"
        let connection = try daemon.connect()
        let id = try #require(try connection.request(#"{"op":"route","router":"random","prompt":"x"}"#).result["decision_id"] as? String)
        let cases: [(String, String, String)] = [
            (
                #"{"op":"feedback","decision_id":"0123456789abcdef","model":"\#(Self.strong)","quality":1}"#, "unknown_decision",
                "no decision with this id"
            ),
            (#"{"op":"feedback","decision_id":"\#(id)","model":"gpt-5","quality":1}"#, "unknown_model", "candidates: \(Self.strong), \(Self.weak)"),
            (#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"win","against":"gpt-5"}"#, "unknown_model", "'gpt-5'"),
            (#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","quality":1.5}"#, "bad_field", "between 0 and 1"),
            (#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"win"}"#, "missing_field", "against"),
            (
                #"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"draw","against":"\#(Self.weak)"}"#, "bad_field",
                "win, loss, tie or failed"
            ),
            (
                #"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"win","against":"\#(Self.strong)"}"#, "bad_field",
                "same model"
            ),
            (
                #"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","quality":1,"outcome":"win","against":"\#(Self.weak)"}"#,
                "bad_field", "not both"
            ),
            (
                #"{"op":"feedback","decision_id":"\#(id)","router":"random","prompt":"x","model":"\#(Self.strong)","quality":1}"#, "bad_field",
                "not both"
            ),
            (#"{"op":"feedback","prompt":"x","model":"\#(Self.strong)","quality":1}"#, "missing_field", "'router' and 'prompt'"),
            (#"{"op":"feedback","router":"nope","prompt":"x","model":"\#(Self.strong)","quality":1}"#, "unknown_router", "nope"),
            (#"{"op":"feedback","model":"\#(Self.strong)","quality":1}"#, "missing_field", "decision_id"),
            (
                #"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","outcome":"failed","against":"\#(Self.weak)"}"#, "bad_field",
                "not with 'failed'"
            ),
            (#"{"op":"feedback","decision_id":"\#(id)","model":"gpt-5","outcome":"failed"}"#, "unknown_model", "candidates"),
        ]
        for (line, code, message) in cases {
            let reply = try connection.request(line)
            #expect(reply.errorCode == code, "\(line) → \(reply)")
            #expect(reply.errorMessage.contains(message), "\(line) → \(reply.errorMessage)")
        }
        // A decision past feedback.decisions.ttl is forgotten: the engine's expiry is tested on virtual
        // time (VirtualTimeTests); here an id the daemon never issued gets the same answer, naming the TTL.
        let expired = try connection.request(#"{"op":"feedback","decision_id":"fedcba9876543210","model":"\#(Self.strong)","quality":1}"#)
        #expect(expired.errorCode == "unknown_decision" && expired.errorMessage.contains("last 1 s"), "\(expired)")
        // Nothing was written, and the connection lives on.
        for file in ["battles.jsonl", "quality.jsonl"] {
            #expect((try FileManager.default.attributesOfItem(atPath: store + "/" + file)[.size] as? Int) == 0, "\(file)")
        }
        #expect(try connection.request(#"{"op":"health"}"#).ok)
        // The real decision is still known.
        #expect(try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","quality":1}"#).ok)
    }

    @Test func withoutAFeedbackSectionFeedbackIsUnavailableButDecisionsHaveIDs() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let decision = try connection.request(#"{"op":"route","router":"random","prompt":"x"}"#)
        let id = try #require(decision.result["decision_id"] as? String)
        let reply = try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.strong)","quality":1}"#)
        #expect(reply.errorCode == "feedback_unavailable" && reply.errorMessage.contains("'feedback:'"), "\(reply)")
        #expect(try connection.request(#"{"op":"stats"}"#).result["feedback"] == nil)
    }

    @Test func decisionsAreRememberedAcrossAReload() throws {
        let daemon = try Self.daemon()
        let connection = try daemon.connect()
        let id = try #require(try connection.request(#"{"op":"route","router":"random","prompt":"before"}"#).result["decision_id"] as? String)
        #expect(try connection.request(#"{"op":"reload"}"#).ok)
        let reply = try connection.request(#"{"op":"feedback","decision_id":"\#(id)","model":"\#(Self.weak)","quality":0}"#)
        #expect(reply.ok, "\(reply)")
        #expect(Self.lines(daemon.directory.path + "/feedback/quality.jsonl").first?["prompt"] as? String == "before")
    }

    /// A feedback folder that cannot be made rejects the reload; the old store keeps recording.
    @Test func aReloadWithAnUnusableFeedbackFolderIsRejected() throws {
        let daemon = try Self.daemon()
        let connection = try daemon.connect()
        let blocker = try daemon.directory.write("not-a-folder", "a file")
        try TestConfig.yaml(socket: daemon.socket, extra: Self.feedbackSection(blocker + "/feedback"))
            .write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let dryRun = try connection.request(#"{"op":"reload","dry_run":true}"#)
        #expect(dryRun.errorCode == "reload_failed" && dryRun.errorMessage.contains("feedback: cannot create the folder"), "\(dryRun)")
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.errorCode == "reload_failed" && reload.errorMessage.contains("feedback: cannot create the folder"), "\(reload)")
        #expect(try connection.request(#"{"op":"feedback","router":"random","prompt":"x","model":"\#(Self.weak)","quality":0}"#).ok)
        #expect(Self.lines(daemon.directory.path + "/feedback/quality.jsonl").count == 1)
    }

    @Test(.requires(.actAsNobody)) func onlyAllowedPeersMaySendFeedback() throws {
        let nobody = try OtherUser.nobody()
        let setpriv = Requirement.setprivPath
        let daemon = try Self.daemon(extra: "  allow: {uids: [\(nobody.uid == 4242 ? 4243 : 4242)]}", mode: "0666")
        let asNobody = nobody.run(try Package.binary("routerctl"))
        let feedback = ["feedback", "--socket", daemon.socket, "--router", "random", "--prompt", "x", "--model", Self.strong, "--quality", "1"]
        let denied = try runCommand(setpriv, asNobody + feedback + ["--json"])
        #expect(denied.status != 0)
        let response = try JSON.object(denied.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(response.errorCode == "forbidden" && response.errorMessage.contains("feedback.allow"), "\(denied.stdout) \(denied.stderr)")
        // Routing stays open to everyone who can connect; root may send feedback.
        #expect(try runCommand(setpriv, asNobody + ["route", "--socket", daemon.socket, "--router", "random", "hello"]).status == 0)
        let allowed = try runCommand(try Package.binary("routerctl"), feedback)
        #expect(allowed.status == 0 && allowed.stdout.contains("recorded in quality.jsonl"), "\(allowed.stdout) \(allowed.stderr)")
    }

    /// Another local user can neither report on root's decision nor learn that it exists, and without
    /// `feedback.allow` may report only on its own decisions, by id (issue 23, finding 4: uid
    /// `nobody` had attached an outcome to root's decision and got root's prompt written into a
    /// row, and 200 outcomes it sent by prompt had been learned).
    @Test(.requires(.actAsNobody)) func aPeerReportsOnlyOnItsOwnDecisions() throws {
        let nobody = try OtherUser.nobody()
        let setpriv = Requirement.setprivPath
        let daemon = try Self.daemon(mode: "0666")
        let routerctl = try Package.binary("routerctl")
        let connection = try daemon.connect()
        let rootsDecision = try connection.decision(#"{"op":"route","router":"random","prompt":"root's secret prompt"}"#)
        func asNobody(_ arguments: [String]) throws -> [String: Any] {
            let run = try runCommand(setpriv, nobody.run(routerctl) + arguments + ["--socket", daemon.socket, "--json"])
            return try JSON.object(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let quality = daemon.directory.path + "/feedback/quality.jsonl"

        let foreign = try asNobody(["feedback", "--decision", rootsDecision.decisionID, "--model", Self.strong, "--quality", "1"])
        #expect(foreign.errorCode == "unknown_decision", "\(foreign)")
        #expect(!foreign.errorMessage.contains("secret"))
        #expect(Self.lines(quality).isEmpty, "nothing was recorded")

        let byPrompt = try asNobody(["feedback", "--router", "random", "--prompt", "x", "--model", Self.strong, "--quality", "1"])
        #expect(byPrompt.errorCode == "forbidden" && byPrompt.errorMessage.contains("feedback.allow"), "\(byPrompt)")
        #expect(Self.lines(quality).isEmpty, "nothing was recorded")

        let own = try asNobody(["route", "--router", "random", "nobody's prompt"])
        let ownID = try #require(own.result["decision_id"] as? String)
        let reported = try asNobody(["feedback", "--decision", ownID, "--model", Self.strong, "--quality", "1"])
        #expect(reported.ok, "\(reported)")
        #expect(Self.lines(quality).map { $0["prompt"] as? String } == ["nobody's prompt"])
        // Root, trusted, may still report on any decision.
        #expect(try connection.request(#"{"op":"feedback","decision_id":"\#(ownID)","model":"\#(Self.strong)","quality":0}"#).ok)
    }

    /// kill -9 while clients send feedback: every acknowledged row is on disk. Then a torn last
    /// line (what a crash mid-write leaves) is cut off at restart, and feedback goes on.
    @Test func acknowledgedFeedbackSurvivesKill9AndATornLineIsCutOffAtRestart() throws {
        let directory = try TemporaryDirectory()
        let store = directory.path + "/feedback"
        var daemon: Daemon? = try Self.daemon(in: directory)
        let socket = daemon!.socket
        final class Acknowledged: Sendable { let prompts = Mutex<[String]>([]) }
        let acknowledged = Acknowledged()
        let senders = (0..<4).map { sender in
            Thread {
                guard let connection = try? LineSocket(path: socket) else { return }
                for event in 0..<100_000 {
                    let prompt = "event \(sender)-\(event)"
                    let line =
                        event % 2 == 0
                        ? #"{"op":"feedback","router":"random","prompt":"\#(prompt)","model":"\#(Self.strong)","quality":1}"#
                        : #"{"op":"feedback","router":"random","prompt":"\#(prompt)","model":"\#(Self.strong)","outcome":"loss","against":"\#(Self.weak)"}"#
                    guard (try? connection.send(line + "\n")) != nil, let reply = try? connection.readLine(timeout: 5),
                        (try? JSON.object(reply))?.ok == true
                    else { return }
                    acknowledged.prompts.withLock { $0.append(prompt) }
                }
            }
        }
        for sender in senders { sender.start() }
        #expect(eventually(within: 60) { acknowledged.prompts.withLock { $0.count } >= 400 })
        kill(daemon!.process.processIdentifier, SIGKILL)
        daemon!.process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.5)  // the senders see the connection close
        let acked = Set(acknowledged.prompts.withLock { $0 })
        func recorded() throws -> Set<String> {
            Set(try BattlesReader.read(file: store + "/battles.jsonl").map(\.prompt) + (try QualityFile.read(store + "/quality.jsonl")).map(\.prompt))
        }
        let onDisk = try recorded()
        print("kill -9 after \(acked.count) acknowledged feedback rows; \(onDisk.count) rows on disk")
        #expect(acked.isSubset(of: onDisk), "lost \(acked.subtracting(onDisk).count) acknowledged rows")

        // What a crash in the middle of a write leaves: half a line.
        let quality = try FileHandle(forWritingAtPath: store + "/quality.jsonl").unwrap()
        try quality.seekToEnd()
        try quality.write(contentsOf: Data(#"{"prompt": "torn", "quali"#.utf8))
        try quality.close()
        daemon = nil
        daemon = try Self.daemon(in: directory)
        #expect(daemon!.log.contains("cut off a torn last line"), "\(daemon!.log)")
        let text = try String(contentsOfFile: store + "/quality.jsonl", encoding: .utf8)
        #expect(text.hasSuffix("\n") && !text.contains("torn"))
        #expect(try recorded() == onDisk, "restart keeps every whole row")
        let connection = try daemon!.connect()
        #expect(try connection.request(#"{"op":"feedback","router":"random","prompt":"after","model":"\#(Self.weak)","quality":0}"#).ok)
        #expect(try recorded() == onDisk.union(["after"]))
    }
}

extension Optional {
    func unwrap(_ what: String = "value") throws -> Wrapped {
        guard let self else { throw HarnessError("missing \(what)") }
        return self
    }
}
