import Foundation
import Store
import Logging
import ServiceLifecycle

/// Tells `perfd status` (another process) that the daemon is alive.
public struct HeartbeatService: Service {
    let store: any PerfdStore
    let logger: Logger
    let clock: any DaemonClock
    public init(store: any PerfdStore, logger: Logger, clock: any DaemonClock = LiveClock()) {
        self.store = store; self.logger = logger; self.clock = clock
    }

    public func run() async throws {
        await PollingLoop.run(every: .seconds(2), clock: clock) {
            do {
                try store.daemonHeartbeat(now: clock.now())
                // Fed only while the database answers, so a wedged daemon is restarted.
                SystemdNotify.send("WATCHDOG=1")
            } catch { logger.warning("heartbeat: \(error)") }
            return false
        }
    }
}
