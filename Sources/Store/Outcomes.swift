import Foundation

/// What recording one received instance did.
public struct RecordOutcome: Sendable, Equatable {
    public var isNew: Bool
    /// A job that was running on this series and is now superseded by the late instance.
    public var supersededJob: Int?
    /// Why the instance was refused: nothing of it was recorded but an audit row.
    public var refused: String? = nil
    /// An identical re-send: the file kept from the first time (the new copy is redundant).
    public var keptPath: String? = nil
    package init(isNew: Bool, supersededJob: Int? = nil, refused: String? = nil, keptPath: String? = nil) {
        self.isNew = isNew; self.supersededJob = supersededJob; self.refused = refused; self.keptPath = keptPath
    }
}

public enum EventLevel: String, Sendable { case info, warning, error }

/// Thrown by stage bookkeeping when the job was cancelled or superseded underneath.
public struct JobGone: Error, CustomStringConvertible {
    public var id: Int
    public var state: JobState
    public var description: String { "job \(id) is \(state.rawValue)" }
    package init(id: Int, state: JobState) {
        self.id = id; self.state = state
    }
}
