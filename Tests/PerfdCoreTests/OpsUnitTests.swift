@testable import Config
import Foundation
import Logging
@testable import Operations
import PerfdTestSupport
import Testing

/// The log line formats and the unit-file reading behind ConfigValidation, without a daemon.
@Suite struct OpsUnitTests {
    func event(_ level: Logger.Level, _ message: String) -> LogEvent {
        LogEvent(level: level, message: Logger.Message(stringLiteral: message), metadata: nil, source: "test",
                 file: #fileID, function: #function, line: #line)
    }

    @Test func journalPrioritiesFollowSyslogNumbers() {
        let expected: [(Logger.Level, Int)] = [(.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2)]
        for (level, p) in expected {
            #expect(PerfdLogHandler.priority(level) == p, "\(level)")
            let line = PerfdLogHandler.line(event: event(level, "x"), metadata: [:], label: "perfd", format: .text, journal: true, now: Date())
            #expect(line.hasPrefix("<\(p)>\(level.rawValue) perfd: x"), "\(line)")
        }
        // Outside the journal: no prefix, a UTC time first.
        let plain = PerfdLogHandler.line(event: event(.warning, "x"), metadata: [:], label: "perfd", format: .text, journal: false,
                                         now: Date(timeIntervalSince1970: 0))
        #expect(plain == "1970-01-01T00:00:00.000Z warning perfd: x\n", "\(plain)")
    }

    @Test func jsonLinesParseBackWhateverTheMessageHolds() throws {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{07} é 🧠"
        let line = PerfdLogHandler.line(event: event(.error, nasty), metadata: ["job": "7", "list": .array(["a", "b"])],
                                        label: "perfd", format: .json, journal: false, now: Date(timeIntervalSince1970: 0))
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1, "one line: \(line)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(o["message"] as? String == nasty)
        #expect(o["level"] as? String == "error" && o["priority"] as? Int == 3)
        #expect((o["metadata"] as? [String: Any])?["job"] as? String == "7")
        #expect(o["time"] as? String == "1970-01-01T00:00:00.000Z")
    }

    @Test func stderrIsTheJournalOnlyWhenTheStreamIsStderrs() {
        #expect(!PerfdLogHandler.stderrIsJournal([:]))
        #expect(!PerfdLogHandler.stderrIsJournal(["JOURNAL_STREAM": "1:2"]))
        #expect(!PerfdLogHandler.stderrIsJournal(["JOURNAL_STREAM": "garbage"]))
        var st = stat()
        fstat(STDERR_FILENO, &st)
        #expect(PerfdLogHandler.stderrIsJournal(["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)"]))
    }

    @Test func unitFileReading() throws {
        let unit = """
        [Service]
        ExecStart=/usr/local/bin/perfd serve --config /etc/perfd/site.yaml
        StateDirectory=perfd
        ReadWritePaths=-/srv/a +/srv/b
        """
        #expect(ConfigValidation.execStartConfig(unit) == "/etc/perfd/site.yaml")
        #expect(ConfigValidation.execStartConfig("ExecStart=/usr/local/bin/perfd serve\n") == "/etc/perfd/perfd.yaml")
        #expect(ConfigValidation.execStartConfig("ExecStart=/bin/true\n") == nil)
        #expect(ConfigValidation.writablePaths(unit) == ["/var/lib/perfd", "/srv/a", "/srv/b"])
        // The shipped unit: the sample's spool and database fit it.
        let shipped = try String(contentsOfFile: Paths.root + "/systemd/perfd.service", encoding: .utf8)
        #expect(ConfigValidation.writablePaths(shipped).contains("/var/lib/perfd"))
    }
}
