#!/usr/bin/env python3
"""Registration benchmark helper.

  registration_tre.py export PHANTOM_DIR OUT_DIR     write each time point as MetaImage (.mhd/.raw)
  registration_tre.py elastix-matrix PARAMS.txt       print elastix's result as a t->0 4x4 matrix (JSON)
  registration_tre.py tre PHANTOM_DIR MATRICES.json   mean/max TRE over brain voxels vs truth.json

Volumes are read with pydicom (independent of perfd); MetaImage offset/spacing are the DICOM
patient coordinates (LPS), so elastix's physical space is perfd's.
"""
import glob
import json
import os
import sys

import numpy as np
import pydicom


def load_series(d):
    frames = {}
    for p in glob.glob(os.path.join(d, "*.dcm")):
        ds = pydicom.dcmread(p)
        frames.setdefault(int(ds.TemporalPositionIdentifier), []).append(ds)
    out = []
    for t in sorted(frames):
        sl = sorted(frames[t], key=lambda s: float(s.ImagePositionPatient[2]))
        vol = np.stack([s.pixel_array.astype(np.float32) * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in sl])
        out.append(vol)
    s0 = sorted(frames[min(frames)], key=lambda s: float(s.ImagePositionPatient[2]))
    origin = [float(v) for v in s0[0].ImagePositionPatient]
    dy, dx = (float(v) for v in s0[0].PixelSpacing)
    dz = float(s0[1].ImagePositionPatient[2]) - origin[2]
    return out, origin, (dx, dy, dz)


def export(phantom, out):
    vols, origin, spacing = load_series(phantom)
    os.makedirs(out, exist_ok=True)
    for t, v in enumerate(vols):
        raw = f"t{t:02d}.raw"
        v.astype("<f4").tofile(os.path.join(out, raw))
        with open(os.path.join(out, f"t{t:02d}.mhd"), "w") as f:
            f.write("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                    f"TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = {origin[0]} {origin[1]} {origin[2]}\n"
                    f"ElementSpacing = {spacing[0]} {spacing[1]} {spacing[2]}\n"
                    f"DimSize = {v.shape[2]} {v.shape[1]} {v.shape[0]}\nElementType = MET_FLOAT\nElementDataFile = {raw}\n")


def elastix_matrix(params):
    text = open(params).read()

    def values(key):
        line = next(l for l in text.splitlines() if l.startswith("(" + key + " "))
        return [float(v) for v in line.strip("()").split()[1:]]
    rx, ry, rz, tx, ty, tz = values("TransformParameters")
    c = np.array(values("CenterOfRotationPoint"))
    zyx = "(ComputeZYX \"true\")" in text
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    R = Rz @ Ry @ Rx if zyx else Rz @ Rx @ Ry   # ITK Euler3DTransform
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = c + np.array([tx, ty, tz]) - R @ c   # fixed (t=0) point -> moving point
    print(json.dumps(np.linalg.inv(m).tolist()))   # t -> 0, as report.json


def tre(phantom, matrices):
    truth = json.load(open(os.path.join(phantom, "truth.json")))["motion"]
    est = json.load(open(matrices))
    vols, origin, spacing = load_series(phantom)
    v0 = vols[0]
    zz, yy, xx = np.nonzero((v0 > 10) & (v0 < 70))
    idx = np.arange(0, len(zz), max(1, len(zz) // 20000))
    pts = np.stack([origin[0] + xx[idx] * spacing[0], origin[1] + yy[idx] * spacing[1], origin[2] + zz[idx] * spacing[2], np.ones(len(idx))])
    means, maxes = [], []
    for t in range(1, len(truth)):
        # Brain voxels of time point 0, carried to time point t by the truth, then back by the estimate.
        pose = np.array(truth[t]["pose_matrix"])
        at_t = pose @ pts
        back = np.array(est[t]) @ at_t
        d = np.linalg.norm((back - pts)[:3], axis=0)
        means.append(float(d.mean()))
        maxes.append(float(d.max()))
    print(json.dumps({"mean_tre_mm": float(np.mean(means)), "worst_mean_tre_mm": float(np.max(means)), "max_tre_mm": float(np.max(maxes))}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "export":
        export(sys.argv[2], sys.argv[3])
    elif cmd == "elastix-matrix":
        elastix_matrix(sys.argv[2])
    elif cmd == "tre":
        tre(sys.argv[2], sys.argv[3])
