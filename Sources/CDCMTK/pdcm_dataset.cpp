// Building and writing datasets (phantom CT, Secondary Capture) with DCMTK.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmdata/dcpath.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

struct pdcm_ds {
    DcmFileFormat ff;
};

extern "C" pdcm_ds *pdcm_ds_new(void) { return new pdcm_ds(); }
extern "C" void pdcm_ds_free(pdcm_ds *ds) { delete ds; }

extern "C" int pdcm_ds_put(pdcm_ds *ds, const char *path, const char *value, char *err, size_t errlen) {
    DcmPathProcessor proc;
    OFString key(path);
    key += "=";
    key += value;
    OFCondition c = proc.applyPathWithValue(ds->ff.getDataset(), key);
    if (c.bad()) {
        pdcm::set_text(err, errlen, std::string("cannot set ") + path + ": " + c.text());
        return 1;
    }
    return 0;
}

extern "C" int pdcm_ds_put_u16(pdcm_ds *ds, uint16_t group, uint16_t element, uint16_t value) {
    return ds->ff.getDataset()->putAndInsertUint16(DcmTagKey(group, element), value).good() ? 0 : 1;
}

extern "C" int pdcm_ds_put_pixels16(pdcm_ds *ds, const uint16_t *data, size_t count) {
    return ds->ff.getDataset()->putAndInsertUint16Array(DCM_PixelData, data, (unsigned long)count).good() ? 0 : 1;
}

extern "C" int pdcm_ds_put_pixels8(pdcm_ds *ds, const uint8_t *data, size_t count) {
    return ds->ff.getDataset()->putAndInsertUint8Array(DCM_PixelData, data, (unsigned long)count).good() ? 0 : 1;
}

static E_TransferSyntax xfer_of(int x) {
    switch (x) {
    case PDCM_XFER_IMPLICIT_LE: return EXS_LittleEndianImplicit;
    case PDCM_XFER_EXPLICIT_BE: return EXS_BigEndianExplicit;
    case PDCM_XFER_DEFLATED: return EXS_DeflatedLittleEndianExplicit;
    case PDCM_XFER_JPEG_LOSSLESS: return EXS_JPEGProcess14SV1;
    case PDCM_XFER_JPEGLS_LOSSLESS: return EXS_JPEGLSLossless;
    case PDCM_XFER_RLE: return EXS_RLELossless;
    default: return EXS_LittleEndianExplicit;
    }
}

extern "C" int pdcm_sync_filesystem(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || syncfs(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        pdcm::set_text(err, errlen, std::string("cannot sync the file system of ") + path + ": " + strerror(e));
        return 1;
    }
    close(fd);
    return 0;
}

extern "C" int pdcm_ds_save(pdcm_ds *ds, const char *path, int xfer, int durable, char *err, size_t errlen) {
    E_TransferSyntax ts = xfer_of(xfer);
    DcmDataset *d = ds->ff.getDataset();
    DcmXfer x(ts);
    if (x.isEncapsulated()) {
        OFCondition c = d->chooseRepresentation(ts, nullptr);
        if (c.bad() || !d->canWriteXfer(ts)) {
            pdcm::set_text(err, errlen, std::string("cannot encode in ") + x.getXferName() + ": " + c.text());
            return 1;
        }
    }
    OFCondition c = ds->ff.saveFile(path, ts, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0, EWM_updateMeta);
    if (c.bad()) {
        pdcm::set_text(err, errlen, std::string("cannot write ") + path + ": " + c.text());
        return 1;
    }
    int e = durable ? pdcm::fsync_path(path, false) : 0;
    if (e != 0) {
        pdcm::set_text(err, errlen, std::string("cannot fsync ") + path + ": " + strerror(e));
        return 1;
    }
    return 0;
}
