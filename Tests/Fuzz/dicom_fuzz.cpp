// libFuzzer target: the path a received instance takes through perfd, minus the network.
// The bytes are the file the SCP writes (file meta + data set as sent); they go through the
// structural scan, DCMTK's parse as store() does it, store()'s image checks, the header
// extraction ingest records (pdcm_file_header), and then the decode assembly would run
// (pdcm_file_open + pdcm_file_decode_pixels), so every file the daemon would acknowledge is
// also decoded. Built and run by scripts/fuzz.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/oflog/oflog.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <string>
#include <vector>

static std::string g_path;
static int g_fd = -1;

// The harness's own failures are not findings: say what failed and stop with a status that is
// not libFuzzer's crash signal, so a full disk is never reported as a crashing input.
[[noreturn]] static void harness_failure(const char *what) {
    fprintf(stderr, "dicom_fuzz: harness failure: %s: %s\n", what, strerror(errno));
    _exit(3);
}

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    pdcm_init();
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);   // codec complaints about fuzzed data would flood the log
    // DCMTK reads files; the input goes to an anonymous in-memory file, read back through its
    // /proc path, so neither TMPDIR's size nor its mount options matter.
    g_fd = memfd_create("perfd-fuzz", 0);
    if (g_fd < 0) harness_failure("memfd_create");
    g_path = "/proc/self/fd/" + std::to_string(g_fd);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::string reason;
    if (!pdcm::scan_dataset(data, size, pdcm::ScanLimits(), reason)) return 0;
    if (ftruncate(g_fd, 0) != 0) harness_failure("ftruncate");
    for (size_t off = 0; off < size;) {
        ssize_t n = pwrite(g_fd, data + off, size - off, off_t(off));
        if (n <= 0) harness_failure("write");
        off += size_t(n);
    }
    {
        DcmFileFormat ff;
        if (ff.loadFile(g_path.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect).bad()) return 0;
        if (pdcm::check_instance(ff.getDataset(), pdcm::ImageLimits(), reason) != 0) return 0;
    }
    char err[512];
    pdcm_file *f = pdcm_file_open(g_path.c_str(), err, sizeof err);
    if (!f) return 0;
    // The header extraction ingest records (the SCP runs the same one on the received
    // dataset): every string must be a readable C string.
    if (const pdcm_header *h = pdcm_file_header(f)) {
        size_t total = 0;
        for (const char *s : {h->sop_class_uid, h->sop_instance_uid, h->study_uid, h->series_uid, h->modality,
                              h->patient_id, h->patient_name, h->accession_number, h->study_description,
                              h->series_description, h->transfer_syntax, h->acquisition_time, h->content_time,
                              h->image_position, h->image_orientation, h->pixel_spacing, h->slice_thickness,
                              h->rescale_slope, h->rescale_intercept, h->photometric})
            if (s) total += strlen(s);
        (void)total;
    }
    char buf[64];
    long rows = pdcm_file_get_string(f, "Rows", buf, sizeof buf) ? atol(buf) : 0;
    long cols = pdcm_file_get_string(f, "Columns", buf, sizeof buf) ? atol(buf) : 0;
    long frames = pdcm_file_get_string(f, "NumberOfFrames", buf, sizeof buf) ? atol(buf) : 1;
    long spp = pdcm_file_get_string(f, "SamplesPerPixel", buf, sizeof buf) ? atol(buf) : 1;
    if (frames < 1) frames = 1;
    if (spp < 1) spp = 1;
    // As assembly sizes its buffer; the decoder must refuse, never overrun, when the
    // buffer is smaller than what the header claims (one slice of the declared size).
    size_t n = size_t(rows > 0 ? rows : 0) * size_t(cols > 0 ? cols : 0);
    if (n <= (size_t(16) << 20)) {
        std::vector<float> out(n + 1);
        (void)pdcm_file_decode_pixels(f, out.data(), n, err, sizeof err);
        if (frames * spp <= 64 && n * frames * spp <= (size_t(16) << 20)) {
            std::vector<float> all(n * frames * spp + 1);
            (void)pdcm_file_decode_pixels(f, all.data(), n * frames * spp, err, sizeof err);
        }
    }
    pdcm_file_close(f);
    return 0;
}
