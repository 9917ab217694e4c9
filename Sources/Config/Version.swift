/// perfd's version, printed by `perfd --version` and exported as `perfd_build_info`.
/// Raised by hand with each release (the release notes in README.md say what changed).
public enum PerfdVersion {
    public static let string = "0.9.0"
    /// The Swift compiler that built this binary.
    public static var swift: String {
        #if compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #else
        return "6.1"
        #endif
    }
}
