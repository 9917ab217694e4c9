"""Independent check of a perfd NIfTI map against the DICOM series it came from.

nibabel reads the map; pydicom reads the source slices of the first time point. The
expected voxel-to-RAS affine is built here from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing (PS3.3 C.7.6.2.1.1), not from perfd's code.
Usage: check_nifti.py MAP.nii DICOM_DIR  -> prints JSON, exits 1 on mismatch.
"""
import glob, json, sys
import nibabel as nib
import numpy as np
import pydicom

nii, src = sys.argv[1], sys.argv[2]
img = nib.load(nii)
slices = [pydicom.dcmread(p) for p in glob.glob(src + "/*.dcm")]
t0 = min(int(s.TemporalPositionIdentifier) for s in slices)
first = [s for s in slices if int(s.TemporalPositionIdentifier) == t0]
iop = np.array(first[0].ImageOrientationPatient, dtype=float)
row, col = iop[:3], iop[3:]
normal = np.cross(row, col)
first.sort(key=lambda s: float(np.dot(normal, np.array(s.ImagePositionPatient, dtype=float))))
ipp0 = np.array(first[0].ImagePositionPatient, dtype=float)
ipp1 = np.array(first[1].ImagePositionPatient, dtype=float)
dr, dc = (float(v) for v in first[0].PixelSpacing)  # row spacing, column spacing
lps = np.eye(4)
lps[:3, 0] = row * dc          # i: along a row (column index)
lps[:3, 1] = col * dr          # j: down a column (row index)
lps[:3, 2] = ipp1 - ipp0       # k: slice to slice
lps[:3, 3] = ipp0
expected = np.diag([-1, -1, 1, 1]) @ lps   # LPS -> RAS
result = {
    "shape": list(img.shape),
    "expected_shape": [int(first[0].Columns), int(first[0].Rows), len(first)],
    "affine_max_abs_diff": float(np.abs(img.affine - expected).max()),
    "dtype": str(img.get_data_dtype()),
    "mean_inside": float(np.asarray(img.dataobj)[img.shape[0] // 2, img.shape[1] // 2, :].mean()),
}
print(json.dumps(result))
ok = result["shape"] == result["expected_shape"] and result["affine_max_abs_diff"] < 1e-3 and result["dtype"] == "float32"
sys.exit(0 if ok else 1)
