import Store

/// The SQLite store is the daemon's store: its methods are the protocol's, one transaction each.
extension JobStore: PerfdStore {}
