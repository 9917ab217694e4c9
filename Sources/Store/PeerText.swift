/// Text a peer chose (AE titles, and what DICOM attributes say), made safe to print.
/// A CR or LF would forge log lines, an ESC sequence would drive the admin's terminal, a
/// bidirectional override would reorder what `perfd status` shows. Each such character is
/// written visibly instead: `\x0d`, `\x1b`, `\u{202e}`. Everything else passes unchanged.
public enum PeerText {
    public static func escaped(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: needsEscape) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for u in s.unicodeScalars {
            if !needsEscape(u) {
                out.unicodeScalars.append(u)
            } else if u.value < 0x100 {
                let hex = String(u.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                out += "\\u{" + String(u.value, radix: 16) + "}"
            }
        }
        return out
    }

    /// Whether the text holds a character `escaped` would rewrite.
    public static func hasControlCharacters(_ s: String) -> Bool {
        s.unicodeScalars.contains(where: needsEscape)
    }

    static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x00...0x1F, 0x7F...0x9F: true                       // C0, DEL, C1 (CSI is 0x9B)
        case 0x2028, 0x2029: true                                   // line and paragraph separators
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true // bidirectional controls
        default: false
        }
    }
}
