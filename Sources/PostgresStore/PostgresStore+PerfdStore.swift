import Store

/// The PostgreSQL store answers the services as the SQLite one does: its methods are the
/// protocol's, one transaction each (fenced by the job's lease where a job is written).
extension PostgresStore: PerfdStore {}
