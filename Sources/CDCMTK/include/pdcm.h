/*
 * pdcm.h — perfd's plain-C face of DCMTK.
 *
 * Swift never includes a DCMTK header: C++ interop is viral, so this target exposes
 * opaque handles and plain functions with the `pdcm_` prefix. Every function that can
 * fail takes an `err` buffer and fills it with a sentence a person can act on.
 */
#ifndef PDCM_H
#define PDCM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- process-wide ------------------------------------------------------------------ */

/* Registers the decoders (JPEG, JPEG-LS, RLE) and encoders, turns DCMTK's own logging
 * down to errors, and switches Nagle's algorithm off for every DCMTK socket (docs/ARCHITECTURE.md §4:
 * ~40 ms per C-STORE otherwise). Idempotent; call before anything else. */
void pdcm_init(void);

/* A new globally unique UID under DCMTK's site root, or under `root` if not NULL. */
void pdcm_generate_uid(const char *root, char *out, size_t outlen);

/* ---- bounds ------------------------------------------------------------------------ */

/* The largest Rows or Columns perfd accepts (refused at C-STORE, checked again before decoding). */
#define PDCM_MAX_IMAGE_SIDE 4096
/* The largest instance perfd keeps, and the most pixel bytes one may declare (1 GiB). */
#define PDCM_MAX_INSTANCE_BYTES 1073741824ull

/* ---- reading files ----------------------------------------------------------------- */

typedef struct pdcm_file pdcm_file;

/* Opens and parses a DICOM file (Part 10, or a bare dataset). NULL on failure. */
pdcm_file *pdcm_file_open(const char *path, char *err, size_t errlen);
void pdcm_file_close(pdcm_file *f);

/* String value of an attribute, all values joined by backslashes; `path` is a tag path
 * as DCMTK understands it ("PatientName", "(0020,0032)", "Seq[0].Attr"). Returns 1 when
 * the attribute exists and has a value, 0 otherwise. */
int pdcm_file_get_string(pdcm_file *f, const char *path, char *out, size_t outlen);

/* The header fields perfd keeps of one instance: what ingest indexes and what 4D
 * assembly needs, read the same way from a received dataset (the SCP) and from a file
 * (reconciliation, `perfd run`). Strings are the attribute's value as written, all values
 * joined by backslashes, "" when absent; numbers are -1 when absent or not a number. */
typedef struct {
    const char *sop_class_uid;
    const char *sop_instance_uid;
    const char *study_uid;
    const char *series_uid;
    const char *modality;
    const char *patient_id;
    const char *patient_name;
    const char *accession_number;
    const char *study_description;
    const char *series_description;
    const char *transfer_syntax;
    const char *acquisition_time;
    const char *content_time;
    const char *image_position;    /* "x\y\z" */
    const char *image_orientation; /* six direction cosines */
    const char *pixel_spacing;     /* "row\column" mm */
    const char *slice_thickness;
    const char *rescale_slope;
    const char *rescale_intercept;
    const char *photometric;       /* PhotometricInterpretation */
    long temporal_position;        /* TemporalPositionIdentifier */
    long temporal_positions;       /* NumberOfTemporalPositions */
    long acquisition_number;
    long images_in_acquisition;
    long instance_number;
    long rows;
    long columns;
    long frames;                   /* NumberOfFrames */
    long bits_allocated;
    long bits_stored;
    long pixel_representation;
    long samples_per_pixel;
} pdcm_header;

/* The file's header fields; the strings live until pdcm_file_close. */
const pdcm_header *pdcm_file_header(pdcm_file *f);

/* Transfer syntax UID the file's dataset is encoded in. */
void pdcm_file_transfer_syntax(pdcm_file *f, char *out, size_t outlen);

/* Decodes the pixel data (any transfer syntax DCMTK has a codec for) into `out` as stored
 * values (no rescale applied), frame after frame: rows*cols*samples*frames values.
 * Returns 0 on success. */
int pdcm_file_decode_pixels(pdcm_file *f, float *out, size_t count, char *err, size_t errlen);

/* ---- writing datasets -------------------------------------------------------------- */

typedef struct pdcm_ds pdcm_ds;

pdcm_ds *pdcm_ds_new(void);
void pdcm_ds_free(pdcm_ds *ds);
/* Sets an attribute (creating sequences and items along `path`) from its string form;
 * the VR comes from the data dictionary. Returns 0 on success. */
int pdcm_ds_put(pdcm_ds *ds, const char *path, const char *value, char *err, size_t errlen);
/* Unsigned short (US) attribute at the top level. */
int pdcm_ds_put_u16(pdcm_ds *ds, uint16_t group, uint16_t element, uint16_t value);
/* Pixel Data as 16-bit words (OW) or bytes (OB). */
int pdcm_ds_put_pixels16(pdcm_ds *ds, const uint16_t *data, size_t count);
int pdcm_ds_put_pixels8(pdcm_ds *ds, const uint8_t *data, size_t count);

enum pdcm_xfer {
    PDCM_XFER_EXPLICIT_LE = 0,
    PDCM_XFER_IMPLICIT_LE = 1,
    PDCM_XFER_EXPLICIT_BE = 2,
    PDCM_XFER_DEFLATED = 3,
    PDCM_XFER_JPEG_LOSSLESS = 4,
    PDCM_XFER_JPEGLS_LOSSLESS = 5,
    PDCM_XFER_RLE = 6
};

/* Writes the dataset as a Part 10 file in the given transfer syntax (compressing if
 * needed), then fsyncs it unless `durable` is 0 (a writer of many files then calls
 * pdcm_sync_filesystem once at the end). Returns 0 on success. */
int pdcm_ds_save(pdcm_ds *ds, const char *path, int xfer, int durable, char *err, size_t errlen);

/* Flushes every file written on the file system holding `path` to disk (syncfs).
 * Returns 0 on success. */
int pdcm_sync_filesystem(const char *path, char *err, size_t errlen);

/* ---- TLS ----------------------------------------------------------------------------- */

/* DICOM over TLS (DCMTK's dcmtls on OpenSSL, BCP 195 non-downgrading profile). Files are
 * PEM. On a listener the certificate and key are required; a client may go without them
 * when the server does not ask for one. `require_peer_certificate` = 1: the peer must
 * present a certificate signed by one of `trusted`; 0: a certificate is checked if given. */
typedef struct {
    const char *certificate;
    const char *private_key;
    const char *const *trusted;
    size_t trusted_count;
    int require_peer_certificate;
    /* Client side: 1 = the server's certificate must name the host connected to (DNS name
     * or IP address in its subjectAltName, or its CN), besides chaining to `trusted`. */
    int verify_hostname;
} pdcm_tls_config;

/* Builds the TLS layer a listener (acceptor 1) or a destination (0) would use from `cfg`
 * and throws it away: 0 when it could be made, else -1 with the reason in `err` (the same
 * checks the listener and the exporter run: files readable, really PEM, key matches). */
int pdcm_tls_check(int acceptor, const pdcm_tls_config *cfg, char *err, size_t err_len);

/* ---- storage SCP ------------------------------------------------------------------- */

typedef struct pdcm_scp pdcm_scp;

typedef struct {
    const char *calling_ae;
    const char *called_ae;
    const char *peer_host;
} pdcm_assoc_info;

/* What a C-STORE delivered, after the file is on disk and fsync'd. */
typedef struct {
    const char *path;              /* final file in the spool */
    pdcm_header header;            /* the dataset's header fields (pdcm_header) */
    const char *calling_ae;
    const char *peer_host;
    uint64_t file_size;
} pdcm_store_info;

/* Decides whether an association may proceed. Return PDCM_ACCEPT, or a refusal code
 * with the reason (for the log) written into `reason`. */
enum { PDCM_ACCEPT = 0, PDCM_REFUSE_CALLING_AE = 1, PDCM_REFUSE_HOST = 2 };
typedef int (*pdcm_accept_fn)(void *ctx, const pdcm_assoc_info *info, char *reason, size_t reasonlen);
/* Commits a stored instance; returns the DIMSE status to answer with (0x0000 = success).
 * Called on DCMTK's worker thread, never on Swift's cooperative pool. */
typedef uint16_t (*pdcm_store_fn)(void *ctx, const pdcm_store_info *info, char *reason, size_t reasonlen);
/* Pre-written spool files (spool_reserve_bytes) are spool_dir/.incoming/PDCM_BLANK_PREFIX<pid>-<n>. */
#define PDCM_BLANK_PREFIX "blank-"

/* Reports an instance refused before it reached the spool (bad dataset, disk full...). */
typedef void (*pdcm_reject_fn)(void *ctx, const pdcm_assoc_info *peer, uint16_t status, const char *reason);
/* Free-form events from the SCP (association ended, network errors) for the log.
 * level: 0 debug, 1 info, 2 warning, 3 error. */
typedef void (*pdcm_log_fn)(void *ctx, int level, const char *message);
/* A connection refused before any association was negotiated (failed TLS handshake,
 * garbage instead of an A-ASSOCIATE-RQ): the peer's address ("" when unknown) and why. */
typedef void (*pdcm_refused_fn)(void *ctx, const char *peer_host, const char *reason);
/* The same with what kind of refusal it was, for counters: "handshake_timeout" (no complete
 * A-ASSOCIATE-RQ or TLS handshake within the deadline), "not_dicom", "tls", "host_limit"
 * (max_connections_per_host), "association_limit" (max_associations). */
typedef void (*pdcm_refused_kind_fn)(void *ctx, const char *peer_host, const char *kind, const char *reason);

typedef struct {
    const char *ae_title;
    uint16_t port;              /* 0 = any free port; read it back with pdcm_scp_port */
    const char *bind_address;   /* reserved; DCMTK binds every interface */
    int max_associations;
    const char *spool_dir;      /* instances go to spool_dir/<series uid>/<sop uid>.dcm */
    uint64_t min_free_bytes;    /* below this, stores are refused with 0xA700 */
    int acse_timeout_s;
    int dimse_timeout_s;
    const pdcm_tls_config *tls; /* NULL: plain TCP; otherwise every association is TLS */
    uint64_t spool_reserve_bytes; /* pre-written spool files kept ready (filled while idle); 0: none */
    int max_connections_per_host; /* open connections from one peer address, this listener; <= 0: 16 */
} pdcm_scp_config;

typedef struct {
    void *ctx;
    pdcm_accept_fn accept;
    pdcm_store_fn store;
    pdcm_reject_fn reject;
    pdcm_log_fn log;
    pdcm_refused_fn refused;    /* may be NULL */
    pdcm_refused_kind_fn refused_kind; /* may be NULL; when set, called instead of `refused` */
} pdcm_scp_callbacks;

/* Binds the listening socket (so "port in use" is reported here) and returns the SCP. */
pdcm_scp *pdcm_scp_create(const pdcm_scp_config *cfg, const pdcm_scp_callbacks *cb, char *err, size_t errlen);
uint16_t pdcm_scp_port(const pdcm_scp *scp);
/* Accepts associations until pdcm_scp_stop; then waits for running associations to end.
 * Blocks the calling thread. Returns 0 on a clean stop. */
int pdcm_scp_run(pdcm_scp *scp);
/* Asks pdcm_scp_run to return within about a second; safe from any thread. */
void pdcm_scp_stop(pdcm_scp *scp);
int pdcm_scp_active_associations(const pdcm_scp *scp);
void pdcm_scp_destroy(pdcm_scp *scp);

/* ---- storage SCU ------------------------------------------------------------------- */

typedef struct {
    const char *host;
    uint16_t port;
    const char *calling_ae;
    const char *called_ae;
    int timeout_s;               /* connection, ACSE and DIMSE timeout */
    const pdcm_tls_config *tls;  /* NULL: plain TCP */
} pdcm_scu_config;

/* Sends `count` Part 10 files over one association (one presentation context per SOP class,
 * explicit and implicit little endian offered). `statuses[i]` receives the DIMSE status of
 * file i, or 0xFFFF when it was not sent. Returns 0 when the association worked (individual
 * statuses may still be failures), non-zero with `err` filled when it did not. */
int pdcm_store_files(const pdcm_scu_config *cfg, const char *const *paths, size_t count, uint16_t *statuses,
                     char *err, size_t errlen);

/* Per-file hooks of pdcm_store_files_each (either may be NULL). `send` is asked right before
 * file i goes: non-zero sends it, zero skips it (its status stays 0xFFFF). `answered` is told
 * the peer's status for file i as soon as it arrives, before the next file is sent, so the
 * caller can record it. */
typedef struct {
    void *ctx;
    int (*send)(void *ctx, size_t index);
    void (*answered)(void *ctx, size_t index, uint16_t status);
} pdcm_scu_hooks;

/* pdcm_store_files with per-file hooks. */
int pdcm_store_files_each(const pdcm_scu_config *cfg, const char *const *paths, size_t count, uint16_t *statuses,
                          const pdcm_scu_hooks *hooks, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* PDCM_H */
