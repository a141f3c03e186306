"""Assemble the static site that nginx serves, from the page sources, the built model and ONNX Runtime Web.

    python build_site.py --model MODEL_DIR --ort ORT_DIST_DIR --ort-version X.Y.Z --out OUT_DIR

- The page's own assets (app.mjs, style.css, favicon) and the model files get a content hash in their names
  (`app.0123456789ab.mjs`); ONNX Runtime Web's files go under a versioned folder
  (`vendor/onnxruntime-web-X.Y.Z/`), where ORT finds its .wasm beside its .mjs. nginx caches both forever;
  only index.html (which names them) is revalidated.
- Only the ORT files the page uses are copied: the `ort.webgpu` build and its asyncify WASM (see
  shared/ENVIRONMENT.md: the default JSEP build fails on WebGPU for some models).
- Every compressible file gets a `.gz` twin (gzip -9, no name or time stamp) for nginx's gzip_static.
  No brotli twins: neither Debian's nginx-light nor the official nginx images carry the brotli module.

Deterministic: the same inputs give byte-identical output.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORT_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
PAGE_ASSETS = ("app.mjs", "style.css", "favicon.svg")
MODEL_FILES = ("digits.onnx", "samples.json", "model.json")
COMPRESSIBLE = {".html", ".mjs", ".js", ".css", ".json", ".svg", ".wasm", ".onnx"}


def hashed_name(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.stem}.{digest}{path.suffix}"


def precompress(path: Path) -> None:
    data = path.read_bytes()
    # mtime=0 and no file name in the header: reproducible bytes.
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    if len(packed) < len(data):
        path.with_name(path.name + ".gz").write_bytes(packed)


def build(site: Path, model: Path, ort_dist: Path, ort_version: str, out: Path) -> dict:
    if not re.fullmatch(r"\d+\.\d+\.\d+", ort_version):
        raise SystemExit(f"not a version: {ort_version!r}")
    missing = [p for p in [*(ort_dist / f for f in ORT_FILES), *(model / f for f in MODEL_FILES)] if not p.is_file()]
    if missing:
        raise SystemExit(f"missing inputs: {', '.join(map(str, missing))}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    vendor = f"vendor/onnxruntime-web-{ort_version}"
    (out / vendor).mkdir(parents=True)
    for name in ORT_FILES:
        shutil.copyfile(ort_dist / name, out / vendor / name)

    urls: dict[str, str] = {}
    (out / "model").mkdir()
    for name in MODEL_FILES:
        target = hashed_name(model / name)
        shutil.copyfile(model / name, out / "model" / target)
        urls[name] = f"model/{target}"
    (out / "assets").mkdir()
    for name in PAGE_ASSETS:
        target = hashed_name(site / name)
        shutil.copyfile(site / name, out / "assets" / target)
        urls[name] = f"assets/{target}"

    config = {
        "ort": f"{vendor}/ort.webgpu.min.mjs",
        "ortVersion": ort_version,
        "model": urls["digits.onnx"],
        "samples": urls["samples.json"],
        "modelInfo": urls["model.json"],
    }
    html = (site / "index.html").read_text()
    replacements = {
        "{{APP}}": urls["app.mjs"],
        "{{STYLE}}": urls["style.css"],
        "{{FAVICON}}": urls["favicon.svg"],
        "{{CONFIG}}": json.dumps(config, separators=(",", ":")),
        "{{ORT_VERSION}}": ort_version,
    }
    for key, value in replacements.items():
        if key not in html:
            raise SystemExit(f"index.html has no {key} placeholder")
        html = html.replace(key, value)
    (out / "index.html").write_text(html)

    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in COMPRESSIBLE:
            precompress(path)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=HERE / "site", help="page sources (default: site/)")
    parser.add_argument("--model", type=Path, required=True, help="output of model/build_model.py")
    parser.add_argument("--ort", type=Path, required=True, help="node_modules/onnxruntime-web/dist")
    parser.add_argument("--ort-version", help="default: from the package.json beside --ort")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    version = args.ort_version or json.loads((args.ort.parent / "package.json").read_text())["version"]
    config = build(args.site, args.model, args.ort, version, args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file() and p.suffix != ".gz")
    print(f"site built in {args.out}: onnxruntime-web {version}, {total / 1e6:.1f} MB uncompressed")
    print(json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
