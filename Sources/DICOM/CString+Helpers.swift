internal import CDCMTK

/// Runs `body` with a zeroed C buffer for an error message and returns the message.
func withErrorBuffer<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T) -> (T, String) {
    var buf = [CChar](repeating: 0, count: 1024)
    let result = buf.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    return (result, String(cString: buf))
}

/// A Swift string from a possibly-NULL C string.
func string(_ p: UnsafePointer<CChar>?) -> String {
    p.map { String(cString: $0) } ?? ""
}

public enum DCMTK {
    /// Registers codecs, quiets DCMTK's logging, disables Nagle. Safe to call repeatedly.
    public static func initialize() { pdcm_init() }

    /// A new unique UID (DCMTK's generator), under `root` when given.
    public static func generateUID(root: String? = nil) -> String {
        var buf = [CChar](repeating: 0, count: 128)
        buf.withUnsafeMutableBufferPointer { b in
            if let root { root.withCString { pdcm_generate_uid($0, b.baseAddress!, b.count) } }
            else { pdcm_generate_uid(nil, b.baseAddress!, b.count) }
        }
        return String(cString: buf)
    }
}
