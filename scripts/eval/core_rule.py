"""The core/penumbra rule of LesionVolumes (Sources/Perfusion/Maps/Masks.swift) in Python, on
a pipeline's output maps, for trying variants of the rule without a rebuild.

Input: directories written by scripts/eval/qc_seeds.py --keep (phantom `s{seed}_n{σ}` and
`out_{pipeline}_s{seed}_n{σ}`). The tissue mask is where maps/cbf.nii is finite
(perfusion-svd writes NaN outside tissue; the learned pipeline's maps are not read here),
less CSF as LesionVolumes.parenchyma decides it, on a baseline from the DICOM's first two
frames (close to perfusion-svd's, not identical). It prints, per case, the replicated volumes next to
the reported ones, what the called core is made of (true label), and the variant's volumes.

Tune on training seeds only (below 9001).
"""
import argparse, glob, json, os, re, sys
import numpy as np
import nibabel as nib
import pydicom
from scipy import ndimage

CORE, PEN = (7, 8), (9, 10)


def load(p):
    return np.asarray(nib.load(p).dataobj, dtype=np.float64)


def parenchyma(ph, tissue, pixel_mm, sigma_mm=2.0, min_hu=18.0):
    """LesionVolumes.parenchyma on the phantom's DICOM: baseline = mean of frames 0 and 1
    (perfusion-svd averages the grid samples before arrival, so this is close, not exact)."""
    vols = []
    for t in (0, 1):
        sl = []
        for f in sorted(glob.glob(os.path.join(ph, f"t{t:02d}_z*.dcm"))):
            d = pydicom.dcmread(f)
            sl.append(d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept))
        vols.append(np.stack(sl, -1))
    b = np.mean(vols, 0).transpose(1, 0, 2)  # (x, y, z) as nibabel
    s = sigma_mm / pixel_mm
    num = ndimage.gaussian_filter(np.where(tissue, b, 0), (s, s, 0), mode="nearest")
    den = ndimage.gaussian_filter(tissue.astype(float), (s, s, 0), mode="nearest")
    return tissue & (den > 1e-3) & (num / np.maximum(den, 1e-3) >= min_hu)


def median3x3(m, mask):
    """3×3 in-plane median over mask voxels only; even counts take the upper middle (Swift's)."""
    X, Y, Z = m.shape
    pad = np.pad(np.where(mask & np.isfinite(m), m, np.nan), ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)
    stack = np.stack([pad[1 + dx:1 + dx + X, 1 + dy:1 + dy + Y, :] for dx in (-1, 0, 1) for dy in (-1, 0, 1)], -1)
    s = np.sort(stack, -1)  # NaN last
    cnt = np.isfinite(stack).sum(-1)
    idx = np.minimum(cnt // 2, 8)
    med = np.take_along_axis(s, idx[..., None], -1)[..., 0]
    return np.where(mask & (cnt > 0), med, m)


def drop_small(m, min_vox):
    if min_vox <= 1:
        return m
    lab, n = ndimage.label(m, structure=ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return m
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    keep = np.zeros(n + 1, bool); keep[1:] = sizes >= min_vox
    return keep[lab]


def enclosed(wall):
    out = np.zeros_like(wall)
    for z in range(wall.shape[2]):
        w = wall[:, :, z]
        lab, n = ndimage.label(~w, structure=ndimage.generate_binary_structure(2, 1))
        border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))) - {0}
        inside = (~w) & ~np.isin(lab, list(border))
        out[:, :, z] = inside
    return out


def rule(cbf, tmax, tissue, voxel_ml, ref=None, rel=0.3, late=6.0, min_ml=3.0, ref_fn=None, core_extra=None):
    """LesionVolumes. Arrays are (x, y, z) as nibabel gives them; Swift's `% width` is x."""
    cbf = median3x3(cbf, tissue); tmax = median3x3(tmax, tissue)
    min_vox = int(round(min_ml / voxel_ml))
    xs = np.arange(cbf.shape[0])[:, None, None] * np.ones(cbf.shape)
    mid = xs[tissue].mean()
    low, high = tissue & (xs < mid), tissue & (xs >= mid)
    dl, dh = (low & (tmax > late)).sum() * voxel_ml, (high & (tmax > late)).sum() * voxel_ml
    more, less = max(dl, dh), min(dl, dh)
    if more - less >= min_ml and more >= 1.5 * less:
        healthy = low if dl < dh else high
    else:
        healthy = low | high
    if ref is None:
        ref = ref_fn(cbf, tmax, healthy) if ref_fn else cbf[healthy].mean()
    hypo = drop_small(tissue & (tmax > late), min_vox)
    enc = enclosed(hypo)
    cand = (hypo | enc) & tissue & (cbf < rel * ref)
    if core_extra is not None:
        cand &= core_extra(cbf, tmax, healthy)
    core = drop_small(cand, min_vox)
    hyp = hypo | core
    return dict(core_ml=core.sum() * voxel_ml, pen_ml=(hyp.sum() - core.sum()) * voxel_ml, core=core, hypo=hyp,
                ref=ref, healthy=healthy)


def cases(work, pipeline, sigma):
    for ph in sorted(glob.glob(os.path.join(work, f"s*_n{sigma:g}"))):
        m = re.match(r"s(\d+)_n", os.path.basename(ph))
        out = os.path.join(work, f"out_{pipeline}_{os.path.basename(ph)}")
        if m and os.path.exists(os.path.join(out, "report.json")):
            yield int(m.group(1)), ph, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work")
    ap.add_argument("--pipeline", default="perfusion-svd")
    ap.add_argument("--sigma", type=float, default=20)
    ap.add_argument("--variants", action="store_true", help="core error per seed for each variant in VARIANTS")
    a = ap.parse_args()
    if a.variants:
        return variants(a)
    for seed, ph, out in cases(a.work, a.pipeline, a.sigma):
        if seed >= 9001:
            print(f"note: seed {seed} is held out", file=sys.stderr)
        rep = json.load(open(os.path.join(out, "report.json")))["summary"]
        truth = json.load(open(os.path.join(ph, "truth.json")))["volumes_ml"]
        lab = load(os.path.join(ph, "truth", "labels.nii"))
        cbf = load(os.path.join(out, "maps", "cbf.nii")) - (rep.get("cbf_noise_floor") or 0)
        cbf = np.maximum(cbf, 0)
        tmax = load(os.path.join(out, "maps", "tmax.nii"))
        hdr = nib.load(os.path.join(out, "maps", "cbf.nii")).header
        tissue = parenchyma(ph, np.isfinite(cbf), float(hdr.get_zooms()[0]))
        vml = float(np.prod(hdr.get_zooms()[:3])) / 1000
        r = rule(cbf, tmax, tissue, vml, ref=rep["reference_cbf"])
        comp = {k: int((r["core"] & np.isin(lab, v)).sum()) for k, v in
                dict(core=CORE, pen=PEN, grey=[3], white=[4], csf=[2], other=[0, 1, 5, 6]).items()}
        print(f"{seed} core {rep['core_ml']:.1f} (py {r['core_ml']:.1f}) / {truth['core']:.1f}  pen {rep['penumbra_ml']:.1f} "
              f"(py {r['pen_ml']:.1f}) / {truth['penumbra']:.1f}  ref {rep['reference_cbf']:.1f}  called core by label {comp}")


def case_maps(ph, out):
    rep = json.load(open(os.path.join(out, "report.json")))["summary"]
    truth = json.load(open(os.path.join(ph, "truth.json")))["volumes_ml"]
    lab = load(os.path.join(ph, "truth", "labels.nii"))
    raw = load(os.path.join(out, "maps", "cbf.nii"))
    floor = rep.get("cbf_noise_floor") or 0
    cbf = np.maximum(raw - floor, 0)
    tmax = load(os.path.join(out, "maps", "tmax.nii"))
    cbv = load(os.path.join(out, "maps", "cbv.nii"))
    hdr = nib.load(os.path.join(out, "maps", "cbf.nii")).header
    tissue = parenchyma(ph, np.isfinite(raw), float(hdr.get_zooms()[0]))
    vml = float(np.prod(hdr.get_zooms()[:3])) / 1000
    return rep, truth, lab, cbf, tmax, cbv, tissue, vml


# Variants to compare: name -> f(summary, cbf, tmax, cbv, tissue, voxel_ml) -> rule(...) result.
# The reported rule is always there; add others (a different reference, mask or gate) here.
VARIANTS = {
    "reported": lambda rep, cbf, tmax, cbv, tissue, vml: rule(cbf, tmax, tissue, vml, ref=rep["reference_cbf"]),
    "median-ref": lambda rep, cbf, tmax, cbv, tissue, vml: rule(cbf, tmax, tissue, vml, ref_fn=lambda c, t, h: float(np.median(c[h]))),
}


def variants(a):
    rows = {}
    for seed, ph, out in cases(a.work, a.pipeline, a.sigma):
        if seed >= 9001:
            sys.exit(f"seed {seed} is held out: variants are tuned on training seeds only")
        rep, truth, lab, cbf, tmax, cbv, tissue, vml = case_maps(ph, out)
        res = {}
        for name, fn in VARIANTS.items():
            r = fn(rep, cbf, tmax, cbv, tissue, vml)
            res[name] = (100 * (r["core_ml"] - truth["core"]) / truth["core"], 100 * (r["pen_ml"] - truth["penumbra"]) / truth["penumbra"])
        rows[seed] = res
        print(seed, "  ".join(f"{n}: {c:+4.0f}/{p:+4.0f}" for n, (c, p) in res.items()))
    for name in VARIANTS:
        c = np.array([rows[s][name][0] for s in rows]); p = np.array([rows[s][name][1] for s in rows])
        print(f"{name:12s} core mean {c.mean():+5.0f} |e| {np.abs(c).mean():4.0f} in25 {(abs(c)<=25).sum()}/{len(c)} >50 {(abs(c)>50).sum()}"
              f"   pen mean {p.mean():+5.0f} |e| {np.abs(p).mean():4.0f} in25 {(abs(p)<=25).sum()} >50 {(abs(p)>50).sum()}")


if __name__ == "__main__":
    main()
