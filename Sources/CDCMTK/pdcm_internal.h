// Helpers shared by the pdcm_*.cpp files; never seen by Swift.
#ifndef PDCM_INTERNAL_H
#define PDCM_INTERNAL_H

#include "pdcm.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"
#include <string>
#include <cstring>

class DcmTransportLayer;
struct T_ASC_Association;

namespace pdcm {

// Copies `msg` into a caller's C buffer, always NUL-terminated.
inline void set_text(char *buf, size_t len, const std::string &msg) {
    if (!buf || len == 0) return;
    size_t n = msg.size() < len - 1 ? msg.size() : len - 1;
    memcpy(buf, msg.data(), n);
    buf[n] = 0;
}

// A string attribute of an item (all values), or "" when absent.
inline std::string get_string(DcmItem *item, const DcmTagKey &key) {
    OFString v;
    if (item->findAndGetOFStringArray(key, v).good()) return std::string(v.c_str());
    return std::string();
}

// An integer attribute (IS, US, SS, UL, SL), or -1 when absent or unparsable.
inline long get_long(DcmItem *item, const DcmTagKey &key) {
    long v = 0;
    Sint32 s = 0;
    if (item->findAndGetSint32(key, s).good()) return s;
    Uint16 u = 0;
    if (item->findAndGetUint16(key, u).good()) return u;
    OFString str;
    if (item->findAndGetOFString(key, str).good() && !str.empty()) {
        char *end = nullptr;
        v = strtol(str.c_str(), &end, 10);
        if (end != str.c_str()) return v;
    }
    return -1;
}

// The header fields of a dataset (pdcm_header) with the strings they point into. One
// extraction for the SCP and for files read from disk. Not copyable: `fields` points into
// `text`.
struct HeaderFields {
    pdcm_header fields{};
    std::string text[20];
    HeaderFields() = default;
    HeaderFields(const HeaderFields &) = delete;
    HeaderFields &operator=(const HeaderFields &) = delete;
    void read(DcmItem *ds, E_TransferSyntax xfer);
};

// Receive timeouts (s) of DCMTK sockets: while an association is being negotiated (set
// process-wide in pdcm_init), and once it is up (DCMTK's own default).
constexpr int kAssociationRequestTimeoutSeconds = 5;
constexpr int kEstablishedReceiveTimeoutSeconds = 60;
// Gives an established association's socket the long receive timeout.
void set_established_receive_timeout(T_ASC_Association *assoc);

// fsync a file or directory by path; returns 0 or errno.
int fsync_path(const std::string &path, bool directory);

// A TLS transport layer set up from the config (pdcm_tls.cpp); NULL with `err` filled
// when a file is missing or unusable. The caller owns the layer.
DcmTransportLayer *make_tls_layer(bool acceptor, const pdcm_tls_config *cfg, std::string &err);

// Bounds on the structure of one received data set (pdcm_scan.cpp). CT needs a few
// levels of sequences (Enhanced CT's functional groups: 2, private vendor data: 3-4); 16
// leaves room for any scanner and costs DCMTK's recursive parser well under 1 MiB of
// stack. A single-frame CT slice has a few hundred elements; an Enhanced CT some 40-50 per
// frame in its functional groups, so 400,000 admits about 8,000 frames. DCMTK spends about
// 300 bytes on each element: at most about 120 MB per association.
struct ScanLimits {
    int max_depth = 16;
    uint64_t max_elements = 400000;
    size_t max_inflated_bytes = size_t(256) << 20;   // a deflated data set, once inflated
};
// Walks a Part 10 file's element stream without recursion or allocation (a deflated data
// set is inflated first, up to max_inflated_bytes) and refuses nesting, element counts and
// declared lengths past the limits or past the bytes present. false with `reason` set.
bool scan_dataset(const uint8_t *data, size_t size, const ScanLimits &limits, std::string &reason);
bool scan_file(const std::string &path, const ScanLimits &limits, std::string &reason);

// Bounds on the image one instance declares: CT is 512×512 (1024 or 2048 on high-resolution
// scanners); 4096 per side is 64 MiB as floats per slice.
struct ImageLimits {
    unsigned max_side = PDCM_MAX_IMAGE_SIDE;
    uint64_t max_pixel_bytes = PDCM_MAX_INSTANCE_BYTES;
};
// Checks a parsed instance's image attributes against what perfd decodes and against its
// pixel data (native: long enough; encapsulated: fragments that can hold the image).
// Returns 0, or a failure status (0xA900) with `reason` completing "instance X ...".
Uint16 check_instance(DcmDataset *ds, const ImageLimits &limits, std::string &reason);
// false (with `reason` completing "instance X ...") for JPEG data DCMTK's decoder would
// never return from; true for anything else.
bool jpeg_decodable(DcmDataset *ds, std::string &reason);

}  // namespace pdcm

#endif
