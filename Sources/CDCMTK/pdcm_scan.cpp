// Bounds on what one received instance may cost, checked before DCMTK parses it.
//
// DCMTK's parser recurses once per sequence level and builds an object per element and
// item, so a few hundred kilobytes of nested sequences overflow a thread's stack and a
// few megabytes of empty items cost gigabytes of heap. scan_dataset walks the element
// stream itself, iteratively and in constant memory: sequences and items (defined or
// undefined length), encapsulated pixel data fragments, every value skipped by its length.
// It refuses nesting, element counts and declared lengths that no CT instance needs, so
// DCMTK only ever sees files whose structure it handles in bounded stack and memory.
// check_instance then holds the parsed dataset to what perfd can decode: image size, bit
// depth, pixel data that can hold (or encode) the image it declares.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <memory>
#include <vector>

namespace pdcm {

namespace {

constexpr uint32_t kUndefined = 0xFFFFFFFFu;
constexpr uint32_t kItem = 0xFFFEE000u, kItemEnd = 0xFFFEE00Du, kSequenceEnd = 0xFFFEE0DDu;
constexpr uint32_t kPixelData = 0x7FE00010u;
constexpr size_t kMaxDeflatedBytes = size_t(64) << 20;

enum Encoding { ExplicitLE, ImplicitLE, ExplicitBE };

std::string hex_tag(uint32_t tag) {
    char b[16];
    snprintf(b, sizeof b, "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
    return b;
}

// The VRs of PS3.5 (2023); those whose explicit header has 2 reserved bytes and a 32-bit length.
bool known_vr(const char *v, bool &longLength) {
    static const char *const shortVRs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                                           "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"};
    static const char *const longVRs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    for (auto s : shortVRs)
        if (v[0] == s[0] && v[1] == s[1]) return longLength = false, true;
    for (auto s : longVRs)
        if (v[0] == s[0] && v[1] == s[1]) return longLength = true, true;
    return false;
}

// The bytes scanned: a buffer, or a file read through a window with pread (a received
// file is in the page cache; headers are read, values skipped, so a 512 KiB slice costs
// one or two 8 KiB reads).
class Source {
public:
    Source(const uint8_t *data, size_t size) : mem_(data), size_(size) {}
    Source(int fd, size_t size) : fd_(fd), size_(size), window_(new uint8_t[kWindow]) {}
    size_t size() const { return size_; }
    bool failed() const { return failed_; }
    // `n` (at most 16) bytes at `pos`, which the caller has checked lie within size().
    const uint8_t *at(size_t pos, size_t n) {
        if (mem_) return mem_ + pos;
        if (pos >= start_ && pos + n <= start_ + len_) return window_.get() + (pos - start_);
        ssize_t got = pread(fd_, window_.get(), kWindow, off_t(pos));
        if (got < ssize_t(n)) {
            failed_ = true;
            static const uint8_t zeros[16] = {};
            return zeros;
        }
        start_ = pos;
        len_ = size_t(got);
        return window_.get();
    }

private:
    static constexpr size_t kWindow = 8 << 10;   // a CT header fits; pixel data is never read
    const uint8_t *mem_ = nullptr;
    int fd_ = -1;
    size_t size_;
    std::unique_ptr<uint8_t[]> window_;
    size_t start_ = 0, len_ = 0;
    bool failed_ = false;
};

class Scanner {
public:
    Scanner(Source &src, const ScanLimits &limits) : src_(src), size_(src.size()), limits_(limits) {}

    // Walks the data set from `start` to the end of the buffer in encoding `enc`.
    bool run(size_t start, Encoding enc, std::string &reason) {
        sp_ = 0;
        stack_[0] = Frame{Frame::Dataset, enc, size_};
        size_t pos = start;
        for (;;) {
            if (src_.failed()) return fail(reason, "cannot read the received file at byte " + std::to_string(pos));
            Frame &top = stack_[sp_];
            if (top.end != kNoEnd && pos == top.end) {
                if (sp_ == 0) return true;
                sp_--;
                continue;
            }
            const size_t limit = containerEnd();
            if (limit - pos < 8) return fail(reason, "an element header at byte " + std::to_string(pos) + " runs past the end of its " + what(top));
            const uint32_t tag = readTag(pos, top.enc);
            if (top.kind == Frame::Sequence || top.kind == Frame::Fragments) {
                const uint32_t len = read32(pos + 4, top.enc);
                pos += 8;
                if (tag == kSequenceEnd) {
                    if (top.end != kNoEnd) return fail(reason, "a sequence delimiter inside a sequence of defined length at byte " + std::to_string(pos - 8));
                    sp_--;
                    continue;
                }
                if (tag != kItem) return fail(reason, "a sequence holds " + hex_tag(tag) + " at byte " + std::to_string(pos - 8) + " where an item belongs");
                if (!count(reason)) return false;
                if (len == kUndefined) {
                    if (top.kind == Frame::Fragments) return fail(reason, "a pixel data fragment of undefined length at byte " + std::to_string(pos - 8));
                    if (!push(Frame{Frame::Item, top.enc, kNoEnd}, reason)) return false;
                    continue;
                }
                if (len > limit - pos) return fail(reason, tooLong("an item", len, pos, limit));
                if (top.kind == Frame::Fragments) {
                    pos += len;
                } else {
                    if (!push(Frame{Frame::Item, top.enc, pos + len}, reason)) return false;
                }
                continue;
            }
            // A data set (the top level or an item's content).
            if (tag == kItemEnd) {
                if (top.kind != Frame::Item || top.end != kNoEnd)
                    return fail(reason, "an item delimiter at byte " + std::to_string(pos) + " closes no item of undefined length");
                pos += 8;
                sp_--;
                continue;
            }
            if ((tag >> 16) == 0xFFFE) return fail(reason, "a delimiter " + hex_tag(tag) + " at byte " + std::to_string(pos) + " stands where a data element belongs");
            if ((tag >> 16) == 0x0002 && sp_ == 0)
                return fail(reason, "file meta information element " + hex_tag(tag) + " inside the data set at byte " + std::to_string(pos));
            if (!count(reason)) return false;
            const size_t at = pos;
            char vr[2] = {0, 0};
            uint32_t len;
            if (top.enc == ImplicitLE) {
                len = read32(pos + 4, top.enc);
                pos += 8;
            } else {
                const uint8_t *h = src_.at(pos + 4, 2);
                vr[0] = char(h[0]);
                vr[1] = char(h[1]);
                bool longLength = false;
                if (!known_vr(vr, longLength))
                    return fail(reason, "element " + hex_tag(tag) + " at byte " + std::to_string(at) + " has no valid value representation");
                if (longLength) {
                    if (limit - pos < 12) return fail(reason, "the header of " + hex_tag(tag) + " runs past the end of its " + what(top));
                    len = read32(pos + 8, top.enc);
                    pos += 12;
                } else {
                    len = read16(pos + 6, top.enc);
                    pos += 8;
                }
            }
            const bool sq = vr[0] == 'S' && vr[1] == 'Q', un = vr[0] == 'U' && vr[1] == 'N';
            if (len == kUndefined) {
                if (tag == kPixelData) {
                    if (!push(Frame{Frame::Fragments, top.enc, kNoEnd}, reason)) return false;
                } else if (top.enc == ImplicitLE || sq || un) {
                    // Undefined-length UN holds implicit little endian (PS3.5 6.2.2).
                    if (!push(Frame{Frame::Sequence, un ? ImplicitLE : top.enc, kNoEnd}, reason)) return false;
                } else {
                    return fail(reason, "element " + hex_tag(tag) + " (" + std::string(vr, 2) + ") at byte " + std::to_string(at) +
                                            " has an undefined length, which only sequences and pixel data may have");
                }
                continue;
            }
            if (len > limit - pos) return fail(reason, tooLong("element " + hex_tag(tag), len, pos, limit));
            // A sequence of defined length is walked too. Without a dictionary an implicit VR
            // (or UN) value may still be one that DCMTK parses as a sequence, so any such
            // value that opens with an item tag is walked as one.
            // Pixel data (group 7FE0) is never a sequence, whatever its first pixels are.
            const bool implicitSeq = (top.enc == ImplicitLE || un) && (tag >> 16) != 0x7FE0u && len >= 8 &&
                                     readTag(pos, un ? ImplicitLE : top.enc) == kItem;
            if (sq || implicitSeq) {
                if (!push(Frame{Frame::Sequence, un ? ImplicitLE : top.enc, pos + len}, reason)) return false;
                continue;
            }
            pos += len;
        }
    }

private:
    static constexpr size_t kNoEnd = SIZE_MAX;
    static constexpr int kMaxFrames = 2 * 64 + 2;
    struct Frame {
        enum Kind { Dataset, Sequence, Item, Fragments } kind;
        Encoding enc;
        size_t end;   // kNoEnd: undefined length, ends at its delimiter
    };

    Source &src_;
    size_t size_;
    const ScanLimits &limits_;
    Frame stack_[kMaxFrames];
    int sp_ = 0;
    uint64_t elements_ = 0;

    // Where the innermost container of defined length (or the file) ends.
    size_t containerEnd() const {
        for (int i = sp_; i >= 0; i--)
            if (stack_[i].end != kNoEnd) return stack_[i].end;
        return size_;
    }
    static std::string what(const Frame &f) {
        switch (f.kind) {
        case Frame::Dataset: return "data set";
        case Frame::Sequence: return "sequence";
        case Frame::Item: return "item";
        default: return "pixel data";
        }
    }
    std::string tooLong(const std::string &what, uint32_t len, size_t pos, size_t limit) const {
        return what + " at byte " + std::to_string(pos) + " declares " + std::to_string(len) + " bytes; only " +
               std::to_string(limit - pos) + (limit == size_ ? " were received" : " remain in its container");
    }
    bool push(const Frame &f, std::string &reason) {
        // Sequences (and encapsulated pixel data) count as nesting levels; items do not add one.
        int seqs = 0;
        for (int i = 0; i <= sp_; i++)
            if (stack_[i].kind == Frame::Sequence || stack_[i].kind == Frame::Fragments) seqs++;
        if (f.kind != Frame::Item && seqs + 1 > limits_.max_depth)
            return fail(reason, "sequences are nested more than " + std::to_string(limits_.max_depth) + " levels deep");
        if (sp_ + 1 >= kMaxFrames) return fail(reason, "sequences are nested too deep");
        stack_[++sp_] = f;
        return true;
    }
    bool count(std::string &reason) {
        if (++elements_ > limits_.max_elements)
            return fail(reason, "the data set holds more than " + std::to_string(limits_.max_elements) + " data elements and items");
        return true;
    }
    static bool fail(std::string &reason, const std::string &why) {
        reason = why;
        return false;
    }
    uint16_t read16(size_t at, Encoding enc) {
        const uint8_t *p = src_.at(at, 2);
        return enc == ExplicitBE ? uint16_t(p[0] << 8 | p[1]) : uint16_t(p[0] | p[1] << 8);
    }
    uint32_t read32(size_t at, Encoding enc) {
        return enc == ExplicitBE ? uint32_t(read16(at, enc)) << 16 | read16(at + 2, enc)
                                 : uint32_t(read16(at, enc)) | uint32_t(read16(at + 2, enc)) << 16;
    }
    uint32_t readTag(size_t at, Encoding enc) { return uint32_t(read16(at, enc)) << 16 | read16(at + 2, enc); }
};

bool starts_with(const std::string &s, const char *prefix) { return s.compare(0, strlen(prefix), prefix) == 0; }

// Inflates a deflated data set into `out`, at most `cap` bytes.
bool inflate_bounded(const uint8_t *in, size_t n, size_t cap, std::vector<uint8_t> &out, std::string &reason) {
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return reason = "cannot start zlib", false;
    z.next_in = const_cast<Bytef *>(in);
    z.avail_in = uInt(std::min<size_t>(n, UINT32_MAX));
    size_t fed = z.avail_in;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (out.size() >= cap) {
            inflateEnd(&z);
            reason = "the deflated data set inflates to more than " + std::to_string(cap >> 20) + " MiB";
            return false;
        }
        const size_t have = out.size();
        out.resize(std::min(cap, have + std::max<size_t>(have, 1 << 16)));
        z.next_out = out.data() + have;
        z.avail_out = uInt(std::min<size_t>(out.size() - have, UINT32_MAX));
        if (z.avail_in == 0 && fed < n) {
            z.next_in = const_cast<Bytef *>(in + fed);
            z.avail_in = uInt(std::min<size_t>(n - fed, UINT32_MAX));
            fed += z.avail_in;
        }
        rc = inflate(&z, Z_NO_FLUSH);
        out.resize(out.size() - z.avail_out);
        if (rc == Z_BUF_ERROR && z.avail_in == 0 && fed >= n) break;   // the stream just ends
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            inflateEnd(&z);
            reason = std::string("the deflated data set is corrupt: ") + (z.msg ? z.msg : "zlib error");
            return false;
        }
    }
    inflateEnd(&z);
    return true;
}

}  // namespace

namespace {

// The file meta group (explicit little endian after "DICM"), then the data set in the
// transfer syntax it names.
bool scan_source(Source &src, const ScanLimits &limits, std::string &reason) {
    // A Part 10 file: 128-byte preamble, "DICM", the file meta group in explicit little
    // endian. perfd writes one in front of every data set it receives, so anything else is
    // not a received instance.
    const size_t size = src.size();
    if (size < 132 || memcmp(src.at(128, 4), "DICM", 4) != 0 || src.failed())
        return reason = "not a DICOM Part 10 file (no DICM prefix)", false;
    size_t pos = 132;
    std::string xfer;
    size_t metaEnd = 0;
    auto le32 = [](const uint8_t *p) { return uint32_t(p[0] | p[1] << 8 | p[2] << 16) | uint32_t(p[3]) << 24; };
    while (size - pos >= 8) {
        const uint8_t *h = src.at(pos, 8);
        if ((h[0] | h[1] << 8) != 0x0002) break;
        const uint32_t tag = uint32_t(0x0002) << 16 | uint32_t(h[2] | h[3] << 8);
        char vr[2] = {char(h[4]), char(h[5])};
        bool longLength = false;
        if (!known_vr(vr, longLength)) return reason = "file meta element " + hex_tag(tag) + " has no valid value representation", false;
        uint32_t len;
        if (longLength) {
            if (size - pos < 12) return reason = "the file meta information is cut short", false;
            len = le32(src.at(pos + 8, 4));
            pos += 12;
        } else {
            len = uint32_t(h[6] | h[7] << 8);
            pos += 8;
        }
        if (len > size - pos) return reason = "file meta element " + hex_tag(tag) + " declares more bytes than were received", false;
        if (tag == 0x00020000 && len == 4) metaEnd = pos + 4 + le32(src.at(pos, 4));
        if (tag == 0x00020010) {
            for (uint32_t k = 0; k < len && k < 64; k++) xfer += char(*src.at(pos + k, 1));
            while (!xfer.empty() && (xfer.back() == '\0' || xfer.back() == ' ')) xfer.pop_back();
        }
        pos += len;
    }
    if (src.failed()) return reason = "cannot read the received file", false;
    // DCMTK ends the meta group where its group length says; both readings must agree or
    // the data set DCMTK parses is not the one scanned here.
    if (metaEnd != 0 && metaEnd != pos) return reason = "the file meta group length disagrees with its elements", false;
    Encoding enc;
    bool deflated = false;
    if (xfer == "1.2.840.10008.1.2") enc = ImplicitLE;
    else if (xfer == "1.2.840.10008.1.2.2") enc = ExplicitBE;
    else if (xfer == "1.2.840.10008.1.2.1") enc = ExplicitLE;
    else if (xfer == "1.2.840.10008.1.2.1.99") enc = ExplicitLE, deflated = true;
    else if (starts_with(xfer, "1.2.840.10008.1.2.4.") || xfer == "1.2.840.10008.1.2.5") enc = ExplicitLE;   // encapsulated
    else return reason = "transfer syntax \"" + xfer + "\" is not one perfd accepts", false;
    if (!deflated) return Scanner(src, limits).run(pos, enc, reason);
    // Deflated: the rest is inflated (bounded) and scanned from memory. The compressed part
    // is copied first, so it is bounded too (a deflated CT slice is well under 1 MiB): 8
    // associations at once cost at most 8 × (64 MiB + max_inflated_bytes).
    if (size - pos > kMaxDeflatedBytes)
        return reason = "the deflated data set is " + std::to_string((size - pos) >> 20) + " MiB; perfd inflates at most " +
                        std::to_string(kMaxDeflatedBytes >> 20) + " MiB of deflated data (send it uncompressed)", false;
    std::vector<uint8_t> compressed(size - pos);
    for (size_t k = 0; k < compressed.size(); k += 16) {
        const size_t n = std::min<size_t>(16, compressed.size() - k);
        memcpy(compressed.data() + k, src.at(pos + k, n), n);
    }
    if (src.failed()) return reason = "cannot read the received file", false;
    std::vector<uint8_t> inflated;
    if (!inflate_bounded(compressed.data(), compressed.size(), limits.max_inflated_bytes, inflated, reason)) return false;
    Source mem(inflated.data(), inflated.size());
    return Scanner(mem, limits).run(0, enc, reason);
}

}  // namespace

bool scan_dataset(const uint8_t *data, size_t size, const ScanLimits &limits, std::string &reason) {
    Source src(data, size);
    return scan_source(src, limits, reason);
}

bool scan_file(const std::string &path, const ScanLimits &limits, std::string &reason) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return reason = "cannot open " + path + ": " + strerror(errno), false;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        reason = "cannot stat " + path + ": " + strerror(errno);
        close(fd);
        return false;
    }
    Source src(fd, size_t(st.st_size));
    bool ok = scan_source(src, limits, reason);
    close(fd);
    return ok;
}

bool jpeg_decodable(DcmDataset *ds, std::string &reason) {
    DcmXfer xfer(ds->getOriginalXfer());
    const std::string uid = xfer.getXferID();
    // The syntaxes DCMTK's dcmjpeg decodes (baseline, extended, lossless).
    if (!xfer.isEncapsulated() || !(starts_with(uid, "1.2.840.10008.1.2.4.5") || uid == "1.2.840.10008.1.2.4.70")) return true;
    DcmElement *px = nullptr;
    DcmPixelSequence *seq = nullptr;
    E_TransferSyntax rep = EXS_Unknown;
    const DcmRepresentationParameter *param = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px || px->ident() != EVR_PixelData) return true;
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, px);
    pd->getOriginalRepresentationKey(rep, param);
    DcmPixelItem *item = nullptr;
    if (pd->getEncapsulatedRepresentation(rep, param, seq).bad() || !seq || seq->getItem(item, 1).bad() || !item) return true;
    // DCMTK 3.6.7 finds the sample precision by walking the first fragment's markers
    // (DJCodecDecoder::scanJpegDataForBitDepth) and does not advance past a TEM marker
    // (FF01): such a fragment holds the decoding thread for good. The same walk here, with
    // the same steps, refuses where DCMTK would loop.
    const uint32_t len = item->getLength();
    uint8_t win[4096];
    uint32_t winStart = 0, winLen = 0;
    auto byte = [&](uint32_t at) -> int {
        if (at < winStart || at >= winStart + winLen) {
            winStart = at;
            winLen = std::min<uint32_t>(sizeof win, len - at);
            if (item->getPartialValue(win, at, winLen).bad()) return -1;
        }
        return win[at - winStart];
    };
    uint32_t offset = 0;
    while (uint64_t(offset) + 4 < len) {
        const int b0 = byte(offset), b1 = byte(offset + 1);
        if (b0 < 0 || b1 < 0) return true;   // unreadable: DCMTK fails on it too, without looping
        const unsigned marker = unsigned(b0) << 8 | unsigned(b1);
        if (marker == 0xFF01) {
            reason = "has JPEG data with a TEM marker (FF01) before its frame header, which DCMTK's decoder never gets past";
            return false;
        }
        if (marker == 0xFFC0 || (marker >= 0xFFC1 && marker <= 0xFFCF && marker != 0xFFC4 && marker != 0xFFC8 && marker != 0xFFCC))
            return true;   // a frame header: DCMTK reads the precision and stops
        if (marker == 0xFFC4 || marker == 0xFFC8 || marker == 0xFFCC || (marker >= 0xFFDA && marker <= 0xFFFE)) {
            const int l0 = byte(offset + 2), l1 = byte(offset + 3);
            if (l0 < 0 || l1 < 0) return true;
            offset += (unsigned(l0) << 8 | unsigned(l1)) + 2;
        } else if (marker >= 0xFFD0 && marker <= 0xFFD9) {
            offset += 2;
        } else if (marker == 0xFFFF) {
            offset += 1;
        } else if (b0 == 0xFF && b1 >= 3 && b1 <= 0xBF) {
            offset += 2;
        } else {
            return true;   // DCMTK gives up here
        }
    }
    return true;
}

Uint16 check_instance(DcmDataset *ds, const ImageLimits &limits, std::string &reason) {
    Uint16 rows = 0, cols = 0, bits = 0;
    if (ds->findAndGetUint16(DCM_Rows, rows).bad() || ds->findAndGetUint16(DCM_Columns, cols).bad() ||
        ds->findAndGetUint16(DCM_BitsAllocated, bits).bad() || rows == 0 || cols == 0 || !ds->tagExistsWithValue(DCM_PixelData)) {
        reason = "lacks Rows, Columns, BitsAllocated or Pixel Data";
        return 0xA900;
    }
    long frames = get_long(ds, DCM_NumberOfFrames);
    long spp = get_long(ds, DCM_SamplesPerPixel);
    if (frames < 1) frames = 1;
    if (spp < 1) spp = 1;
    if (rows > limits.max_side || cols > limits.max_side) {
        reason = "declares a " + std::to_string(cols) + "×" + std::to_string(rows) + " image; perfd takes at most " +
                 std::to_string(limits.max_side) + "×" + std::to_string(limits.max_side);
        return 0xA900;
    }
    if (bits != 8 && bits != 16) {
        reason = "has BitsAllocated " + std::to_string(bits) + "; perfd reads 8- or 16-bit CT pixels";
        return 0xA900;
    }
    if (spp > 3) {
        reason = "has SamplesPerPixel " + std::to_string(spp) + " (CT has 1)";
        return 0xA900;
    }
    const uint64_t need = uint64_t(rows) * cols * uint64_t(spp) * (bits / 8);
    if (uint64_t(frames) > limits.max_pixel_bytes / need) {
        reason = "declares " + std::to_string(frames) + " frames of " + std::to_string(cols) + "×" + std::to_string(rows) +
                 ", more than " + std::to_string(limits.max_pixel_bytes >> 20) + " MiB of pixels";
        return 0xA900;
    }
    const uint64_t total = need * uint64_t(frames);
    DcmElement *px = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px) {
        reason = "has no Pixel Data";
        return 0xA900;
    }
    DcmXfer xfer(ds->getOriginalXfer());
    if (!xfer.isEncapsulated()) {
        // Native pixel data must hold every frame; a short element means a cut-off sender.
        if (px->getLength() < total) {
            reason = "has " + std::to_string(px->getLength()) + " bytes of Pixel Data, " + std::to_string(total) +
                     " expected; the file was cut short";
            return 0xA900;
        }
        return 0;
    }
    // Encapsulated: an offset table and at least one fragment, and enough compressed bytes
    // for the image declared. RLE is the one codec with a hard ceiling (a replicate run makes
    // at most 128 bytes of 2, plus each frame's 64-byte header); the others get a fragment
    // per frame at least.
    DcmPixelSequence *seq = nullptr;
    E_TransferSyntax rep = EXS_Unknown;
    const DcmRepresentationParameter *param = nullptr;
    DcmPixelData *pd = px->ident() == EVR_PixelData ? OFstatic_cast(DcmPixelData *, px) : nullptr;
    if (pd) pd->getOriginalRepresentationKey(rep, param);
    if (!pd || pd->getEncapsulatedRepresentation(rep, param, seq).bad() || !seq || seq->card() < 2) {
        reason = "has encapsulated Pixel Data without an offset table and fragments";
        return 0xA900;
    }
    uint64_t encoded = 0;
    for (unsigned long i = 1; i < seq->card(); i++) {
        DcmPixelItem *item = nullptr;
        if (seq->getItem(item, i).good() && item) encoded += item->getLength();
    }
    if (encoded == 0 || uint64_t(seq->card() - 1) < (xfer.getXfer() == EXS_RLELossless ? uint64_t(frames) : 1)) {
        reason = "has " + std::to_string(seq->card() - 1) + " pixel data fragments holding " + std::to_string(encoded) +
                 " bytes for " + std::to_string(frames) + " frame(s)";
        return 0xA900;
    }
    if (!jpeg_decodable(ds, reason)) return 0xA900;
    if (xfer.getXfer() == EXS_RLELossless && encoded * 64 < total) {
        reason = "declares a " + std::to_string(cols) + "×" + std::to_string(rows) + " image (" + std::to_string(total) +
                 " bytes) in " + std::to_string(encoded) + " bytes of RLE, which cannot encode it";
        return 0xA900;
    }
    return 0;
}

}  // namespace pdcm
