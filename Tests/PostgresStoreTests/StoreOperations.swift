import JobStore
import PostgresStore
import Store

/// What the parity test drives on both stores: the services' protocol `PerfdStore` (both
/// conform to it in their own targets) and the admin and inspection operations of `JobStore`
/// that the protocol leaves out, as a protocol both stores conform to with empty extensions:
/// if `PostgresStore` drifts from `JobStore`'s names, labels, argument or result types, this
/// file stops compiling.
protocol StoreOperations: PerfdStore {
    // jobs
    func jobs(_ filter: JobFilter, limit: Int?) throws -> (jobs: [JobRecord], total: Int)
    func job(_ id: Int) throws -> JobRecord?
    func events(job id: Int) throws -> [JobEvent]
    func stages(job id: Int) throws -> [StageRecord]
    func finishedStages(job id: Int) throws -> [String: String]
    func setState(job id: Int, _ state: JobState, now: Double) throws
    func retry(job id: Int, actor: String, now: Double) throws -> JobRecord
    func cancel(job id: Int, actor: String, now: Double) throws -> JobRecord
    // outbox
    func report(job id: Int) throws -> String?
    func outbox(job id: Int) throws -> [OutboxItem]
    // audit
    func auditTrail(since: Double, limit: Int) throws -> [AuditEntry]
}

extension JobStore: StoreOperations {}
extension PostgresStore: StoreOperations {}
