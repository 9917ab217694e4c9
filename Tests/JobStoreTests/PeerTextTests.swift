import JobStore
import Store
import Testing

@Suite struct PeerTextTests {
    @Test func controlCharactersAreWrittenVisiblyAndEverythingElsePassesUnchanged() {
        #expect(PeerText.escaped("CT_SCAN1") == "CT_SCAN1")
        #expect(PeerText.escaped("Müller^Jürgen") == "Müller^Jürgen")
        #expect(PeerText.escaped("A\r\nB\u{1b}[2J\u{0}") == "A\\x0d\\x0aB\\x1b[2J\\x00")
        #expect(PeerText.escaped("x\u{9b}y\u{7f}") == "x\\x9by\\x7f")
        #expect(PeerText.escaped("evil\u{202e}txt\u{2028}") == "evil\\u{202e}txt\\u{2028}")
        #expect(PeerText.hasControlCharacters("A\tB") && !PeerText.hasControlCharacters("A B"))
    }
}
