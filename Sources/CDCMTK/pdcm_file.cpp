// Reading DICOM files: attributes by tag path, and pixels decoded by DCMTK's codecs.
#include "pdcm.h"
#include "pdcm_internal.h"

#include "dcmtk/dcmdata/dcpath.h"

#include <vector>

struct pdcm_file {
    DcmFileFormat ff;
    pdcm::HeaderFields header;
    bool headerRead = false;
};

void pdcm::HeaderFields::read(DcmItem *ds, E_TransferSyntax xfer) {
    const DcmTagKey keys[20] = {
        DCM_SOPClassUID, DCM_SOPInstanceUID, DCM_StudyInstanceUID, DCM_SeriesInstanceUID, DCM_Modality,
        DCM_PatientID, DCM_PatientName, DCM_AccessionNumber, DCM_StudyDescription, DCM_SeriesDescription,
        DcmTagKey(), DCM_AcquisitionTime, DCM_ContentTime, DCM_ImagePositionPatient, DCM_ImageOrientationPatient,
        DCM_PixelSpacing, DCM_SliceThickness, DCM_RescaleSlope, DCM_RescaleIntercept, DCM_PhotometricInterpretation};
    for (int i = 0; i < 20; i++) text[i] = i == 10 ? std::string(DcmXfer(xfer).getXferID()) : get_string(ds, keys[i]);
    const char **strings[20] = {
        &fields.sop_class_uid, &fields.sop_instance_uid, &fields.study_uid, &fields.series_uid, &fields.modality,
        &fields.patient_id, &fields.patient_name, &fields.accession_number, &fields.study_description,
        &fields.series_description, &fields.transfer_syntax, &fields.acquisition_time, &fields.content_time,
        &fields.image_position, &fields.image_orientation, &fields.pixel_spacing, &fields.slice_thickness,
        &fields.rescale_slope, &fields.rescale_intercept, &fields.photometric};
    for (int i = 0; i < 20; i++) *strings[i] = text[i].c_str();
    fields.temporal_position = get_long(ds, DCM_TemporalPositionIdentifier);
    fields.temporal_positions = get_long(ds, DCM_NumberOfTemporalPositions);
    fields.acquisition_number = get_long(ds, DCM_AcquisitionNumber);
    fields.images_in_acquisition = get_long(ds, DCM_ImagesInAcquisition);
    fields.instance_number = get_long(ds, DCM_InstanceNumber);
    fields.rows = get_long(ds, DCM_Rows);
    fields.columns = get_long(ds, DCM_Columns);
    fields.frames = get_long(ds, DCM_NumberOfFrames);
    fields.bits_allocated = get_long(ds, DCM_BitsAllocated);
    fields.bits_stored = get_long(ds, DCM_BitsStored);
    fields.pixel_representation = get_long(ds, DCM_PixelRepresentation);
    fields.samples_per_pixel = get_long(ds, DCM_SamplesPerPixel);
}

extern "C" const pdcm_header *pdcm_file_header(pdcm_file *f) {
    if (!f->headerRead) {
        DcmDataset *ds = f->ff.getDataset();
        f->header.read(ds, ds->getOriginalXfer());
        f->headerRead = true;
    }
    return &f->header.fields;
}

extern "C" pdcm_file *pdcm_file_open(const char *path, char *err, size_t errlen) {
    auto *f = new pdcm_file();
    OFCondition cond = f->ff.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
    if (cond.bad()) {
        pdcm::set_text(err, errlen, std::string("cannot read DICOM file ") + path + ": " + cond.text());
        delete f;
        return nullptr;
    }
    // Swift reads every string as UTF-8, so text in another Specific Character Set (ISO_IR 100
    // Latin-1, for one) is converted once here, through DCMTK and the C library's iconv; the
    // dataset then declares ISO_IR 192. A set iconv cannot convert is left as it is: its
    // ASCII part still reads right.
    OFString cs;
    DcmDataset *ds = f->ff.getDataset();
    if (ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs).good() && !cs.empty() && cs != "ISO_IR 192" &&
        cs != "ISO_IR 6") {
        (void)f->ff.convertToUTF8();
    }
    return f;
}

extern "C" void pdcm_file_close(pdcm_file *f) { delete f; }

// Finds the element a tag path names, or nullptr.
static DcmElement *find_element(DcmDataset *ds, const char *path) {
    DcmPathProcessor proc;
    if (proc.findOrCreatePath(ds, path, OFFalse).bad()) return nullptr;
    OFList<DcmPath *> results;
    if (proc.getResults(results) == 0) return nullptr;
    DcmPath *p = results.front();
    if (p->empty()) return nullptr;
    DcmObject *obj = p->back()->m_obj;
    if (!obj || !obj->isLeaf()) return nullptr;
    return OFstatic_cast(DcmElement *, obj);
}

extern "C" int pdcm_file_get_string(pdcm_file *f, const char *path, char *out, size_t outlen) {
    DcmElement *el = find_element(f->ff.getDataset(), path);
    if (!el) return 0;
    OFString v;
    if (el->getOFStringArray(v).bad() || v.empty()) return 0;
    pdcm::set_text(out, outlen, v.c_str());
    return 1;
}

extern "C" void pdcm_file_transfer_syntax(pdcm_file *f, char *out, size_t outlen) {
    DcmXfer x(f->ff.getDataset()->getOriginalXfer());
    pdcm::set_text(out, outlen, x.getXferID());
}

extern "C" int pdcm_file_decode_pixels(pdcm_file *f, float *out, size_t count, char *err, size_t errlen) {
    DcmDataset *ds = f->ff.getDataset();
    Uint16 rows = 0, cols = 0, bitsAlloc = 0, bitsStored = 0, pixRep = 0, spp = 1;
    if (ds->findAndGetUint16(DCM_Rows, rows).bad() || ds->findAndGetUint16(DCM_Columns, cols).bad() ||
        ds->findAndGetUint16(DCM_BitsAllocated, bitsAlloc).bad()) {
        pdcm::set_text(err, errlen, "Rows, Columns or BitsAllocated is missing");
        return 1;
    }
    if (ds->findAndGetUint16(DCM_BitsStored, bitsStored).bad()) bitsStored = bitsAlloc;
    // The sign and mask arithmetic below needs 1 <= BitsStored <= BitsAllocated (found by the
    // fuzzer: BitsStored 0 shifted by -1).
    if (bitsStored == 0 || bitsStored > bitsAlloc) {
        pdcm::set_text(err, errlen, "BitsStored " + std::to_string(bitsStored) + " is not between 1 and BitsAllocated (" +
                                        std::to_string(bitsAlloc) + ")");
        return 1;
    }
    ds->findAndGetUint16(DCM_PixelRepresentation, pixRep);
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    long frames = pdcm::get_long(ds, DCM_NumberOfFrames);
    if (frames < 1) frames = 1;
    // Bounded before a codec sizes its buffer from the same header (a 15 KB RLE file
    // declaring 65535×65535 made DCMTK allocate 8 GiB): files in the spool may predate the
    // SCP's checks.
    if (rows > PDCM_MAX_IMAGE_SIDE || cols > PDCM_MAX_IMAGE_SIDE || spp < 1 || spp > 4 ||
        uint64_t(frames) > PDCM_MAX_INSTANCE_BYTES / (uint64_t(rows) * cols * spp * 2 + 1)) {
        pdcm::set_text(err, errlen, "declares " + std::to_string(cols) + "×" + std::to_string(rows) + "×" + std::to_string(spp) +
                                        " samples × " + std::to_string(frames) + " frames; at most " +
                                        std::to_string(PDCM_MAX_IMAGE_SIDE) + "×" + std::to_string(PDCM_MAX_IMAGE_SIDE) + " is decoded");
        return 1;
    }
    size_t n = size_t(rows) * cols * spp * size_t(frames);
    if (n > count) {
        pdcm::set_text(err, errlen, "output buffer too small for " + std::to_string(n) + " pixel values");
        return 1;
    }
    // Decompress in place to explicit little endian if the file is encapsulated.
    DcmXfer orig(ds->getOriginalXfer());
    if (orig.isEncapsulated()) {
        std::string why;
        if (!pdcm::jpeg_decodable(ds, why)) {
            pdcm::set_text(err, errlen, "the instance " + why);
            return 1;
        }
        OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        if (c.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
            pdcm::set_text(err, errlen, std::string("cannot decode pixel data in transfer syntax ") + orig.getXferName() +
                                            ": " + c.text());
            return 1;
        }
    }
    if (bitsAlloc == 16) {
        const Uint16 *px = nullptr;
        if (ds->findAndGetUint16Array(DCM_PixelData, px).bad() || !px) {
            pdcm::set_text(err, errlen, "Pixel Data is missing or unreadable");
            return 1;
        }
        unsigned long avail = 0;
        DcmElement *el = nullptr;
        if (ds->findAndGetElement(DCM_PixelData, el).good()) avail = el->getLength() / 2;
        if (avail < n) {
            pdcm::set_text(err, errlen, "Pixel Data holds " + std::to_string(avail) + " values, expected " + std::to_string(n));
            return 1;
        }
        const Uint16 mask = bitsStored >= 16 ? 0xFFFF : Uint16((1u << bitsStored) - 1);
        for (size_t i = 0; i < n; i++) {
            Uint16 v = px[i] & mask;
            if (pixRep == 1 && bitsStored < 16 && (v & (1u << (bitsStored - 1)))) {
                out[i] = float(Sint32(v) - Sint32(1u << bitsStored));
            } else if (pixRep == 1) {
                out[i] = float(Sint16(v));
            } else {
                out[i] = float(v);
            }
        }
        return 0;
    }
    if (bitsAlloc == 8) {
        const Uint8 *px = nullptr;
        if (ds->findAndGetUint8Array(DCM_PixelData, px).bad() || !px) {
            pdcm::set_text(err, errlen, "Pixel Data is missing or unreadable");
            return 1;
        }
        unsigned long avail = 0;
        DcmElement *el = nullptr;
        if (ds->findAndGetElement(DCM_PixelData, el).good()) avail = el->getLength();
        if (avail < n) {
            pdcm::set_text(err, errlen, "Pixel Data holds " + std::to_string(avail) + " values, expected " + std::to_string(n));
            return 1;
        }
        for (size_t i = 0; i < n; i++) out[i] = pixRep == 1 ? float(Sint8(px[i])) : float(px[i]);
        return 0;
    }
    pdcm::set_text(err, errlen, "BitsAllocated " + std::to_string(bitsAlloc) + " is not supported (8 or 16 expected)");
    return 1;
}
