import Config
import DICOM
import Foundation
import Ingest
import Testing

@Suite struct ConfigTests {
    /// The config in the foundation issue must work as written.
    @Test func issueExampleParses() throws {
        let c = try Config.parse(yaml: """
        ae_title: PERFD
        port: 11112
        allowed_peers:
          - ae_title: SCANNER
            host: 127.0.0.1
        spool_dir: /var/lib/perfd/spool
        database: /var/lib/perfd/perfd.sqlite
        series_quiet_seconds: 10
        destinations:
          - ae_title: PACS
            host: 127.0.0.1
            port: 4242
        """)
        #expect(c.aeTitle == "PERFD")
        #expect(c.port == 11112)
        #expect(c.allowedPeers == [Config.Peer(aeTitle: "SCANNER", host: "127.0.0.1")])
        #expect(c.seriesQuietSeconds == 10)
        #expect(c.destinations.first?.port == 4242)
        #expect(c.database == "/var/lib/perfd/perfd.sqlite")
    }

    @Test func tlsMetricsAndListenerKeys() throws {
        let dir = NSTemporaryDirectory() + "perfd-config-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["a.pem", "a.key", "ca.pem"] { FileManager.default.createFile(atPath: "\(dir)/\(f)", contents: Data("x".utf8)) }
        let c = try Config.parse(yaml: """
        allowed_peers: []
        plain_listener: false
        metrics_port: 9464
        tls:
          port: 2762
          certificate: \(dir)/a.pem
          private_key: \(dir)/a.key
          trusted_certificates: \(dir)/ca.pem
        destinations:
          - {ae_title: PACS, host: pacs, port: 2762, tls: {trusted_certificates: [\(dir)/ca.pem], require_peer_certificate: true}}
        """)
        #expect(!c.plainListener)
        #expect(c.metricsPort == 9464 && c.metricsAddress == "127.0.0.1")
        #expect(c.tls == Config.TLSListener(port: 2762, settings: TLSSettings(certificate: "\(dir)/a.pem", privateKey: "\(dir)/a.key",
                                                                             trustedCertificates: ["\(dir)/ca.pem"])))
        #expect(c.destinations.first?.tls?.certificate == nil)
        #expect(c.destinations.first?.tls?.trustedCertificates == ["\(dir)/ca.pem"])
        let bad = #expect(throws: ConfigError.self) {
            try Config.parse(yaml: """
            allowed_peers: []
            plain_listener: false
            tls:
              certificate: /nonexistent/cert.pem
              require_peer_certificate: maybe
            """)
        }
        let text = bad.map { "\($0)" } ?? ""
        #expect(text.contains("tls needs certificate and private_key"))
        #expect(text.contains("cannot read /nonexistent/cert.pem"))
        #expect(text.contains("tls.require_peer_certificate is \"maybe\""))
        #expect(text.contains("tls needs port"))
        #expect(text.contains("plain_listener is false but there is no tls listener"))
    }

    @Test func everyProblemIsListedWithItsKey() {
        #expect {
            try Config.parse(yaml: """
            ae_title: THIS_AE_TITLE_IS_TOO_LONG
            port: 70000
            allowed_peers:
              - host: 10.0.0.1
            colour: blue
            pipelines:
              - pipeline: magic
            """)
        } throws: { e in
            let text = "\(e)"
            return text.contains("ae_title") && text.contains("not a valid AE title")
                && text.contains("port is 70000") && text.contains("allowed_peers[0] needs ae_title")
                && text.contains("unknown key \"colour\"") && text.contains("\"magic\" is not a pipeline")
        }
    }

    /// max_connections_per_host: 16 unless set, a whole number 1-1024 otherwise.
    @Test func connectionsPerHostKey() throws {
        #expect(try Config.parse(yaml: "allowed_peers: []\n").maxConnectionsPerHost == 16)
        #expect(try Config.parse(yaml: "allowed_peers: []\nmax_connections_per_host: 40\n").maxConnectionsPerHost == 40)
        for bad in ["0", "5000", "lots"] {
            #expect { try Config.parse(yaml: "allowed_peers: []\nmax_connections_per_host: \(bad)\n") } throws: {
                "\($0)".contains("max_connections_per_host")
            }
        }
    }

    @Test func missingAllowedPeersIsAnError() {
        #expect { try Config.parse(yaml: "ae_title: PERFD\n") } throws: { "\($0)".contains("allowed_peers is missing") }
    }

    @Test func pipelineRulesPickTheFirstMatch() throws {
        let c = try Config.parse(yaml: """
        allowed_peers: []
        default_pipeline: baseline-t0
        pipelines:
          - pipeline: baseline-mean-all
            series_description: perf
            min_timepoints: 10
          - pipeline: baseline-mean03
            modality: CT
        """)
        #expect(c.pipeline(modality: "CT", seriesDescription: "Brain PERFUSION 5mm", timepoints: 19) == "baseline-mean-all")
        #expect(c.pipeline(modality: "CT", seriesDescription: "Brain PERFUSION 5mm", timepoints: 5) == "baseline-mean03")
        #expect(c.pipeline(modality: "MR", seriesDescription: "x", timepoints: 19) == "baseline-t0")
    }
}

@Suite struct PeerPolicyTests {
    let peers = [Config.Peer(aeTitle: "SCANNER", host: "127.0.0.1"), Config.Peer(aeTitle: "ANYWHERE")]

    func decide(_ ae: String, _ host: String) -> AssociationDecision {
        IngestHandler.decide(AssociationRequest(callingAE: ae, calledAE: "PERFD", host: host), allowedPeers: peers)
    }

    @Test func allowedPeerFromItsHostIsAccepted() {
        guard case .accept = decide("SCANNER", "127.0.0.1") else { Issue.record("expected accept"); return }
        guard case .accept = decide("ANYWHERE", "10.1.2.3") else { Issue.record("expected accept"); return }
    }

    @Test func unknownAEIsRefusedByName() {
        guard case .refuseCallingAE(let why) = decide("CT_SCAN1", "10.0.0.5") else { Issue.record("expected refusal"); return }
        #expect(why == "calling AE \"CT_SCAN1\" from 10.0.0.5 is not in allowed_peers")
    }

    @Test func knownAEFromWrongHostIsRefused() {
        guard case .refuseHost(let why) = decide("SCANNER", "10.9.9.9") else { Issue.record("expected refusal"); return }
        #expect(why.contains("allowed only from 127.0.0.1"))
    }

    @Test func emptyListRefusesEveryone() {
        let d = IngestHandler.decide(AssociationRequest(callingAE: "SCANNER", calledAE: "PERFD", host: "127.0.0.1"), allowedPeers: [])
        guard case .refuseCallingAE = d else { Issue.record("expected refusal"); return }
    }
}

@Suite struct SeriesCompletionTests {
    func snap(count: Int, tp: Int? = 19, iia: Int? = 8, positions: Int = 8, timepoints: Int = 19, last: Double = 100) -> SeriesCompletion.Snapshot {
        .init(instanceCount: count, temporalPositions: tp, imagesInAcquisition: iia, distinctPositions: positions,
              distinctTimepoints: timepoints, lastReceived: last)
    }

    @Test func expectedCountCompletesAtOnce() {
        #expect(SeriesCompletion.decide(snap(count: 152), now: 100.1, quietSeconds: 10) == .complete(reason: "expected count 152 reached"))
        #expect(SeriesCompletion.decide(snap(count: 151), now: 100.1, quietSeconds: 10) == .waiting)
    }

    @Test func withoutImagesInAcquisitionDistinctPositionsCount() {
        #expect(SeriesCompletion.expectedCount(snap(count: 0, iia: nil, positions: 8, timepoints: 19)) == 152)
        // Not every time point seen yet: no expectation, the timer decides.
        #expect(SeriesCompletion.expectedCount(snap(count: 0, iia: nil, positions: 8, timepoints: 18)) == nil)
    }

    @Test func aDeclaredSeriesShortOfItsCountIsWarnedAboutThenStalls() {
        // 40 of 152 and quiet for 20 s: a warning, not a completion; stalled after 600 s.
        #expect(SeriesCompletion.decide(snap(count: 40), now: 120, quietSeconds: 10, stalledSeconds: 600) == .quiet(shortfall: "40 of 152 instances"))
        #expect(SeriesCompletion.decide(snap(count: 40), now: 700, quietSeconds: 10, stalledSeconds: 600)
                == .stalled(reason: "stalled: 40 of 152 instances, none for 600 s"))
        // NumberOfTemporalPositions alone, not every time point seen yet: still short.
        #expect(SeriesCompletion.decide(snap(count: 20, iia: nil, positions: 8, timepoints: 3), now: 120, quietSeconds: 10, stalledSeconds: 600)
                == .quiet(shortfall: "20 instances in 3 of 19 time points"))
    }

    @Test func imagesInAcquisitionCountingTheWholeAcquisitionIsRecognised() {
        #expect(SeriesCompletion.decide(snap(count: 152, iia: 152), now: 100.1, quietSeconds: 10, stalledSeconds: 600)
                == .complete(reason: "expected count 152 reached"))
    }

    @Test func stalledMustOutlastQuiet() throws {
        let bad = #expect(throws: ConfigError.self) {
            try Config.parse(yaml: "allowed_peers: []\nseries_quiet_seconds: 30\nseries_stalled_seconds: 20\n")
        }
        #expect(bad?.description.contains("series_stalled_seconds (20.0) must be longer than series_quiet_seconds (30.0)") == true, "\(String(describing: bad))")
        // Unset, it follows a long quiet timer: a config from before the key still starts.
        let old = try Config.parse(yaml: "allowed_peers: []\nseries_quiet_seconds: 3600\n")
        #expect(old.seriesStalledSeconds == 7200)
        #expect(try Config.parse(yaml: "allowed_peers: []\n").seriesStalledSeconds == 600)
    }

    @Test func quietTimerCompletesWhenNothingIsKnown() {
        #expect(SeriesCompletion.decide(snap(count: 10, tp: nil, iia: nil), now: 109.9, quietSeconds: 10) == .waiting)
        #expect(SeriesCompletion.decide(snap(count: 10, tp: nil, iia: nil), now: 110, quietSeconds: 10) == .complete(reason: "no new instance for 10 s"))
    }
}
