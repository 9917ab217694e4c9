"""Independent check that perfd's colour maps and summary page lie where their source is.

pydicom reads the outputs and the source slices of the first time point; nibabel reads the
NIfTI maps (whose affine check_nifti.py checks against the source). For every pixel of a
colour map, its patient position (from the output's Plane Position, Plane Orientation and
Pixel Measures) is taken to the map's voxel through the NIfTI affine; the pixel's colour must
be the colour of that voxel's value. On the summary page, the red (core) pixels must fall on
core voxels of lesion.nii. The colour table is rebuilt here from its stops.
Usage: check_placement.py OUT_DIR SOURCE_DIR  -> prints JSON, exits 1 on a mismatch.
"""
import glob, json, math, sys
import nibabel as nib
import numpy as np
import pydicom

out, src = sys.argv[1], sys.argv[2]
slices = [pydicom.dcmread(p) for p in glob.glob(src + "/*.dcm")]
t0 = min(int(s.TemporalPositionIdentifier) for s in slices)
first = [s for s in slices if int(s.TemporalPositionIdentifier) == t0]
iop = np.array(first[0].ImageOrientationPatient, dtype=float)
normal = np.cross(iop[:3], iop[3:])
locations = sorted(float(np.dot(normal, np.array(s.ImagePositionPatient, dtype=float))) for s in first)
frame_of_reference = first[0].FrameOfReferenceUID

stops = [(0.00, 0, 0, 0), (0.10, 0, 0, 0.6), (0.30, 0, 0.5, 1), (0.50, 0, 1, 0.3), (0.70, 1, 1, 0), (0.88, 1, 0.3, 0), (1.00, 1, 0, 0)]
def colour(t):
    t = min(1.0, max(0.0, t))
    t = math.floor(t * 255 + 0.5) / 255   # half away from zero, as perfd rounds
    k = max(i for i, s in enumerate(stops) if s[0] <= t)
    a, b = stops[k], stops[min(k + 1, len(stops) - 1)]
    f = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 0
    return tuple(int(math.floor(255 * (a[c] + (b[c] - a[c]) * f) + 0.5)) for c in (1, 2, 3))

table = np.array([colour(i / 255) for i in range(256)])

def plane(ds):
    shared = ds.SharedFunctionalGroupsSequence[0]
    o = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    sp = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    p = np.array(ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient, dtype=float)
    return p, o[:3], o[3:], sp

def voxels_of(ds, img):
    """Voxel index (i, j, k) of every pixel of ds, through its plane and the NIfTI affine."""
    p, row, col, (dr, dc) = plane(ds)
    r, c = np.mgrid[0:ds.Rows, 0:ds.Columns]
    lps = p[None, None, :] + c[..., None] * dc * row + r[..., None] * dr * col
    ras = lps * np.array([-1, -1, 1])
    inv = np.linalg.inv(img.affine)
    ijk = ras @ inv[:3, :3].T + inv[:3, 3]
    return np.rint(ijk).astype(int), p, row, col

result = {"maps": {}, "problems": []}
ranges = {"cbf": 80, "cbv": 6, "mtt": 14, "tmax": 12, "ttp": 40}
for name, hi in ranges.items():
    files = sorted(glob.glob(f"{out}/dicom/{name}/*.dcm"))
    if not files:
        continue
    img = nib.load(f"{out}/maps/{name}.nii")
    data = np.asarray(img.dataobj)
    checked = wrong = 0
    for f in files:
        ds = pydicom.dcmread(f)
        if "SharedFunctionalGroupsSequence" not in ds or "PerFrameFunctionalGroupsSequence" not in ds:
            result["problems"].append(f"{f}: no plane (Plane Position / Orientation, Pixel Measures)")
            continue
        if ds.get("FrameOfReferenceUID") != frame_of_reference:
            result["problems"].append(f"{f}: frame of reference {ds.FrameOfReferenceUID}, source {frame_of_reference}")
        ijk, p, row, col = voxels_of(ds, img)
        if np.abs(np.concatenate([row, col]) - iop).max() > 1e-4:
            result["problems"].append(f"{f}: orientation differs from the source's")
        loc = float(np.dot(normal, p))
        want = locations[int(ds.InstanceNumber) - 1]
        if abs(loc - want) > 1e-3:
            result["problems"].append(f"{f}: slice location {loc:.3f} mm, source slice {want:.3f} mm")
        pixels = ds.pixel_array.astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.array(data.shape)), axis=-1)
        i, j, k = (ijk[inside][:, n] for n in range(3))
        v = data[i, j, k].astype(float)
        finite = np.isfinite(v)
        index = np.floor(np.clip(np.where(finite, v, 0) / hi, 0, 1) * 255 + 0.5).astype(int)
        expected = np.where(finite[:, None], table[index], 0)
        checked += int(inside.sum())
        wrong += int(np.any(pixels[inside] != expected, axis=-1).sum())
    result["maps"][name] = {"files": len(files), "pixels_checked": checked, "pixels_wrong": wrong}
    if checked == 0 or wrong > 0.01 * checked:
        result["problems"].append(f"{name}: {wrong} of {checked} pixels not the colour of the voxel they lie on")

summary = sorted(glob.glob(f"{out}/dicom/summary/*.dcm"))
if summary:
    ds = pydicom.dcmread(summary[0])
    if "SharedFunctionalGroupsSequence" not in ds:
        result["problems"].append("summary: no plane")
        print(json.dumps(result))
        sys.exit(1)
    lesion = nib.load(f"{out}/maps/lesion.nii")
    labels = np.asarray(lesion.dataobj)
    ijk, p, row, col = voxels_of(ds, lesion)
    px = ds.pixel_array.astype(int)
    red = (px[..., 0] > 150) & (px[..., 1] < 100) & (px[..., 2] < 100)
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape)), axis=-1)
    hits = [labels[tuple(ijk[y, x])] == 1 for (y, x) in zip(*np.nonzero(red & inside))]
    on_core = float(np.mean(hits)) if hits else 0.0
    result["summary"] = {"red_pixels_on_the_slice": len(hits), "share_on_core_voxels": on_core,
                         "frame_of_reference_matches": ds.get("FrameOfReferenceUID") == frame_of_reference}
    if ds.get("FrameOfReferenceUID") != frame_of_reference:
        result["problems"].append("summary: frame of reference differs from the source's")
    if (labels == 1).any() and (len(hits) < 20 or on_core < 0.9):
        result["problems"].append(f"summary: {len(hits)} red pixels on the slice, {on_core:.2f} of them on core voxels")

print(json.dumps(result))
sys.exit(1 if result["problems"] or not result["maps"] else 0)
