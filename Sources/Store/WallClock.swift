import Foundation

/// Wall-clock seconds since 1970: what every timestamp column holds. (Not `Clock`: that
/// name is the standard library's clock protocol.)
public enum WallClock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
