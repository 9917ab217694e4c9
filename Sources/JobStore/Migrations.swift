import Foundation
import Store
/// Named, append-only schema migrations, each in its own transaction. Never edit a
/// migration that has shipped: add a new one.
enum Migrations {
    static let all: [(name: String, sql: String)] = [
        ("001_initial", """
        CREATE TABLE series (
            series_uid TEXT PRIMARY KEY,
            study_uid TEXT NOT NULL,
            patient_id TEXT NOT NULL DEFAULT '',
            patient_name TEXT NOT NULL DEFAULT '',
            study_description TEXT NOT NULL DEFAULT '',
            series_description TEXT NOT NULL DEFAULT '',
            modality TEXT NOT NULL DEFAULT '',
            calling_ae TEXT NOT NULL DEFAULT '',
            first_received REAL NOT NULL,
            last_received REAL NOT NULL,
            instance_count INTEGER NOT NULL DEFAULT 0 CHECK (instance_count >= 0),
            bytes INTEGER NOT NULL DEFAULT 0,
            temporal_positions INTEGER,
            images_in_acquisition INTEGER,
            state TEXT NOT NULL CHECK (state IN ('receiving', 'complete')),
            completed_at REAL,
            completion_reason TEXT
        );
        CREATE TABLE instances (
            sop_instance_uid TEXT PRIMARY KEY,
            series_uid TEXT NOT NULL REFERENCES series(series_uid),
            sop_class_uid TEXT NOT NULL,
            path TEXT NOT NULL,
            file_size INTEGER NOT NULL,
            transfer_syntax TEXT NOT NULL DEFAULT '',
            temporal_position INTEGER,
            acquisition_number INTEGER,
            instance_number INTEGER,
            acquisition_time TEXT,
            content_time TEXT,
            position TEXT,
            received_at REAL NOT NULL
        );
        CREATE INDEX instances_by_series ON instances(series_uid);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            series_uid TEXT NOT NULL REFERENCES series(series_uid),
            study_uid TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('queued', 'running', 'exporting', 'done', 'failed', 'cancelled', 'superseded')),
            stage TEXT,
            progress REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
            instances INTEGER NOT NULL,
            rerun INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            qc TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX jobs_by_state ON jobs(state);
        CREATE INDEX jobs_by_series ON jobs(series_uid);
        CREATE TABLE job_stages (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            stage TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            result TEXT,
            PRIMARY KEY (job_id, stage)
        );
        CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            at REAL NOT NULL,
            level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
            message TEXT NOT NULL
        );
        CREATE INDEX job_events_by_job ON job_events(job_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE TABLE daemon (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            ae_title TEXT NOT NULL,
            port INTEGER NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            stopped_at REAL
        );
        """),
        ("002_outbox", """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            destination TEXT NOT NULL,
            series_uid TEXT NOT NULL,
            sop_instance_uid TEXT NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('result', 'failure_notice')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL,
            UNIQUE (job_id, destination, sop_instance_uid)
        );
        CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
        ALTER TABLE jobs ADD COLUMN report TEXT;
        """),
        ("003_audit_retention", """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('association', 'series', 'export', 'admin')),
            outcome TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            host TEXT NOT NULL DEFAULT '',
            series_uid TEXT,
            job_id INTEGER,
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX audit_by_time ON audit(at);
        ALTER TABLE series ADD COLUMN purged_at REAL;
        """),
        ("004_health_audit_count", """
        CREATE TABLE health (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            at REAL NOT NULL,
            pid INTEGER NOT NULL
        );
        ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
        """),
        // `perfd jobs --accession` (series received before this migration have none).
        ("005_series_accession", """
        ALTER TABLE series ADD COLUMN accession_number TEXT NOT NULL DEFAULT '';
        CREATE INDEX series_by_patient ON series(patient_id);
        """),
        // Outbox rows name their destination by id (it held "AE@host:port" text before,
        // which the exporter parsed back). Existing rows keep their destination: the text
        // is split at '@' and at the port digits after the last ':'; a row that does not
        // split (never written so) fails the migration on NOT NULL rather than vanish.
        ("006_outbox_destination_id", """
        CREATE TABLE destinations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ae_title TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL,
            UNIQUE (ae_title, host, port)
        );
        INSERT OR IGNORE INTO destinations (ae_title, host, port)
            SELECT DISTINCT substr(destination, 1, instr(destination, '@') - 1),
                   substr(destination, instr(destination, '@') + 1,
                          length(rtrim(destination, '0123456789')) - instr(destination, '@') - 1),
                   CAST(substr(destination, length(rtrim(destination, '0123456789')) + 1) AS INTEGER)
            FROM outbox;
        CREATE TABLE outbox_by_id (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            destination_id INTEGER NOT NULL REFERENCES destinations(id),
            series_uid TEXT NOT NULL,
            sop_instance_uid TEXT NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('result', 'failure_notice')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL,
            UNIQUE (job_id, destination_id, sop_instance_uid)
        );
        INSERT INTO outbox_by_id (id, job_id, destination_id, series_uid, sop_instance_uid, path, kind, state, attempts,
                                  next_attempt_at, last_error, created_at, sent_at)
            SELECT o.id, o.job_id, d.id, o.series_uid, o.sop_instance_uid, o.path, o.kind, o.state, o.attempts,
                   o.next_attempt_at, o.last_error, o.created_at, o.sent_at
            FROM outbox o LEFT JOIN destinations d ON d.ae_title || '@' || d.host || ':' || d.port = o.destination;
        DROP TABLE outbox;
        ALTER TABLE outbox_by_id RENAME TO outbox;
        CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
        """),
        // The image attributes 4D assembly needs, recorded at ingest in the instance's own
        // transaction so assembly need not parse every header again. Rows from before keep
        // header_recorded = 0 (and NULLs): assembly reads those files' headers.
        ("007_instance_image_header", """
        ALTER TABLE instances ADD COLUMN header_recorded INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE instances ADD COLUMN image_rows INTEGER;
        ALTER TABLE instances ADD COLUMN image_columns INTEGER;
        ALTER TABLE instances ADD COLUMN number_of_frames INTEGER;
        ALTER TABLE instances ADD COLUMN orientation TEXT;
        ALTER TABLE instances ADD COLUMN pixel_spacing TEXT;
        ALTER TABLE instances ADD COLUMN slice_thickness TEXT;
        ALTER TABLE instances ADD COLUMN rescale_slope TEXT;
        ALTER TABLE instances ADD COLUMN rescale_intercept TEXT;
        ALTER TABLE instances ADD COLUMN photometric TEXT;
        ALTER TABLE instances ADD COLUMN bits_allocated INTEGER;
        ALTER TABLE instances ADD COLUMN bits_stored INTEGER;
        ALTER TABLE instances ADD COLUMN pixel_representation INTEGER;
        ALTER TABLE instances ADD COLUMN samples_per_pixel INTEGER;
        """),
    ]

    static func apply(to db: Database) throws {
        try db.write { tx in
            try tx.executeScript("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        }
        for m in all {
            try db.write { tx in
                guard try tx.query("SELECT 1 FROM migrations WHERE name = ?", m.name).isEmpty else { return }
                try tx.executeScript(m.sql)
                try tx.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", m.name, WallClock.now())
            }
        }
    }
}
