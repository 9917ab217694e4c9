import Foundation
import Store
import Logging
import ServiceLifecycle

/// Tells `perfd status` (another process) that the daemon is alive.
public struct HeartbeatService: Service {
    let store: any PerfdStore
    let logger: Logger
    public init(store: any PerfdStore, logger: Logger) { self.store = store; self.logger = logger }

    public func run() async throws {
        await PollingLoop.run(every: .seconds(2)) {
            do {
                try store.daemonHeartbeat()
                // Fed only while the database answers, so a wedged daemon is restarted.
                SystemdNotify.send("WATCHDOG=1")
            } catch { logger.warning("heartbeat: \(error)") }
            return false
        }
    }
}
