import DaemonTestSupport
import Config
import Foundation
import JobStore
import Logging
import PerfdCore
import PerfdTestSupport
import Store
import Testing

/// The in-process daemon harness itself: port 0 only through its option, the ports it
/// reads back are the bound ones, and its clock moves the services' timers.
@Suite struct DaemonHarnessTests {
    /// The config file the harness starts on (port 0, metrics_port 0) is refused by the
    /// daemon `perfd serve` builds: only `Daemon.Options.ephemeralPorts` lets port 0 through.
    @Test func portZeroIsRefusedWithoutTheHarnessOption() throws {
        let dir = TempDir()
        let path = writeConfig(in: dir, port: 0, extra: "metrics_port: 0")
        let config = try Config.load(path: path)
        let plain = ConfigValidation.run(config, configPath: path)
        #expect(plain.problems.contains { $0.contains("port is 0") }, "\(plain.problems)")
        #expect(plain.problems.contains { $0.contains("metrics_port is 0") }, "\(plain.problems)")
        #expect(ConfigValidation.run(config, configPath: path, ephemeralPorts: true).ok)
        #expect(throws: ConfigError.self) { try Daemon(config: config, configPath: path, logger: Logger(label: "test")) }
        // Nothing was opened by the refusal: no database, no lock.
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/state/perfd.sqlite"))
    }

    /// With the option the kernel picks the ports and the harness reports the bound ones:
    /// the DICOM listener accepts connections there and /health answers there.
    @Test func theHarnessListensOnTheKernelsPorts() throws {
        let dir = TempDir()
        let server = try InProcessDaemon(configPath: writeConfig(in: dir, port: 0, extra: "metrics_port: 0"),
                                         logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let metricsPort = try #require(server.metricsPort)
        #expect(server.port > 0 && metricsPort > 0 && server.port != metricsPort)
        #expect(portOpen(server.port))
        #expect(try httpGet(port: metricsPort, "/health").status == 200)
        #expect(server.log.contains("listening as PERFD on port \(server.port)"), "\(server.log)")
        server.stop()
        let port = server.port
        #expect((try? waitFor(10, "the listener to close") { !portOpen(port) }) != nil, "the listener is still open after stop(): \(server.log)")
    }

    /// The services sleep on the injected clock: the heartbeat (every 2 s) records the
    /// clock's time, which an advance moves an hour ahead of the wall clock.
    @Test func theServicesRunOnTheInjectedClock() throws {
        let dir = TempDir()
        let server = try InProcessDaemon(configPath: writeConfig(in: dir, port: 0), logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let start = WallClock.now()
        server.clock.advance(by: 3600)
        let moved = (try? waitFor(10, "a heartbeat at the clock's time") {
            try databaseInt(dir, "SELECT CAST(heartbeat_at AS INTEGER) FROM daemon") >= Int(start) + 3600
        }) != nil
        let at = try databaseInt(dir, "SELECT CAST(heartbeat_at AS INTEGER) FROM daemon")
        #expect(moved, "heartbeat_at \(at), wall clock \(Int(start)): \(server.log)")
    }

    /// A sleeper wakes when an advance takes it past its deadline, not at the wall clock's.
    @Test(.timeLimit(.minutes(1))) func aSleeperWakesOnAnAdvance() async throws {
        let clock = ManualClock()
        let before = clock.now()
        let started = WallClock.now()
        async let slept: Void = clock.sleep(for: .seconds(3600))
        try await Task.sleep(for: .milliseconds(100))
        clock.advance(by: 1800)
        clock.advance(by: 1800)
        try await slept
        #expect(WallClock.now() - started < 60, "waited on the wall clock")
        #expect(clock.now() - before >= 3600)
    }
}
