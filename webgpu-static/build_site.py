"""Assemble the static site that nginx serves, from the page sources, the built model and the npm packages.

    python build_site.py --model MODEL_DIR --node-modules NODE_MODULES_DIR --out OUT_DIR

- Two pages: index.html (the digit classifier, app.mjs) and chat.html (the in-browser chat, chat.mjs).
- The pages' own assets (modules, style.css, favicon) and the digit model's files get a content hash in their
  names (`app.0123456789ab.mjs`); a module's imports of the others are rewritten to their hashed names first,
  so a change anywhere renames everything that depends on it. Each npm package's files go under a versioned
  folder (`vendor/onnxruntime-web-X.Y.Z/`), where ORT finds its .wasm beside its .mjs. nginx caches all of
  these forever; only the pages (which name them) are revalidated.
- Only the npm files the pages use are copied: ORT's `ort.webgpu` build and its asyncify WASM (see
  shared/ENVIRONMENT.md: the default JSEP build fails on WebGPU for some models), the ES module builds of
  Hugging Face's tokenizers and jinja (the chat's tokenizer and chat template).
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
# npm package -> (folder name under vendor/, the files the pages load from its dist/ folder)
PACKAGES = {
    "onnxruntime-web": ("onnxruntime-web", ORT_FILES),
    "@huggingface/tokenizers": ("huggingface-tokenizers", ("tokenizers.min.mjs",)),
    "@huggingface/jinja": ("huggingface-jinja", ("index.js",)),
}
# Leaves first: a module is hashed after the modules it imports.
PAGE_MODULES = (
    "webgpu.mjs",
    "sampling.mjs",
    "text-stream.mjs",
    "model-files.mjs",
    "llm.mjs",
    "server-chat.mjs",
    "app.mjs",
    "chat.mjs",
)
PAGE_ASSETS = ("style.css", "favicon.svg")
PAGES = {"index.html": "app.mjs", "chat.html": "chat.mjs"}
IMPORT = re.compile(r"""(from\s+'\./)([\w-]+\.mjs)(')""")
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


def package_versions(node_modules: Path) -> dict[str, str]:
    """Each package's version, from its package.json (npm ci installs exactly the lock file's)."""
    versions = {}
    for package in PACKAGES:
        manifest = node_modules / package / "package.json"
        if not manifest.is_file():
            raise SystemExit(f"missing inputs: {manifest} (run npm ci)")
        versions[package] = json.loads(manifest.read_text())["version"]
        if not re.fullmatch(r"\d+\.\d+\.\d+", versions[package]):
            raise SystemExit(f"not a version: {package} {versions[package]!r}")
    return versions


def copy_vendor(node_modules: Path, versions: dict[str, str], out: Path) -> dict[str, str]:
    """The packages' files under vendor/NAME-VERSION/; returns package -> that folder."""
    folders = {}
    missing = [node_modules / package / "dist" / name for package, (_, files) in PACKAGES.items() for name in files]
    missing = [path for path in missing if not path.is_file()]
    if missing:
        raise SystemExit(f"missing inputs: {', '.join(map(str, missing))}")
    for package, (folder, files) in PACKAGES.items():
        folders[package] = f"vendor/{folder}-{versions[package]}"
        (out / folders[package]).mkdir(parents=True)
        for name in files:
            shutil.copyfile(node_modules / package / "dist" / name, out / folders[package] / name)
    return folders


def copy_modules(site: Path, out: Path) -> dict[str, str]:
    """The page modules under assets/, hashed after their imports were renamed; returns name -> path."""
    urls: dict[str, str] = {}
    for name in PAGE_MODULES:
        text = (site / name).read_text()

        def renamed(match: re.Match, module: str = name) -> str:
            if match.group(2) not in urls:
                raise SystemExit(f"{module} imports {match.group(2)}, which PAGE_MODULES lists later or not at all")
            return f"{match.group(1)}{Path(urls[match.group(2)]).name}{match.group(3)}"

        text = IMPORT.sub(renamed, text)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        urls[name] = f"assets/{Path(name).stem}.{digest}.mjs"
        (out / urls[name]).write_text(text)
    return urls


def fill_page(site: Path, page: str, replacements: dict[str, str], out: Path) -> None:
    html = (site / page).read_text()
    for key, value in replacements.items():
        if key not in html:
            raise SystemExit(f"{page} has no {key} placeholder")
        html = html.replace(key, value)
    (out / page).write_text(html)


def build(site: Path, model: Path, node_modules: Path, out: Path) -> dict:
    versions = package_versions(node_modules)
    missing = [model / f for f in MODEL_FILES if not (model / f).is_file()]
    if missing:
        raise SystemExit(f"missing inputs: {', '.join(map(str, missing))}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vendor = copy_vendor(node_modules, versions, out)

    urls: dict[str, str] = {}
    (out / "model").mkdir()
    for name in MODEL_FILES:
        target = hashed_name(model / name)
        shutil.copyfile(model / name, out / "model" / target)
        urls[name] = f"model/{target}"
    (out / "assets").mkdir()
    urls |= copy_modules(site, out)
    for name in PAGE_ASSETS:
        target = hashed_name(site / name)
        shutil.copyfile(site / name, out / "assets" / target)
        urls[name] = f"assets/{target}"

    ort_version = versions["onnxruntime-web"]
    config = {
        "ort": f"{vendor['onnxruntime-web']}/ort.webgpu.min.mjs",
        "ortVersion": ort_version,
        "tokenizers": f"{vendor['@huggingface/tokenizers']}/tokenizers.min.mjs",
        "jinja": f"{vendor['@huggingface/jinja']}/index.js",
        "model": urls["digits.onnx"],
        "samples": urls["samples.json"],
        "modelInfo": urls["model.json"],
    }
    for page, module in PAGES.items():
        replacements = {
            "{{APP}}": urls[module],
            "{{STYLE}}": urls["style.css"],
            "{{FAVICON}}": urls["favicon.svg"],
            "{{CONFIG}}": json.dumps(config, separators=(",", ":")),
            "{{ORT_VERSION}}": ort_version,
        }
        fill_page(site, page, replacements, out)

    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in COMPRESSIBLE:
            precompress(path)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=HERE / "site", help="page sources (default: site/)")
    parser.add_argument("--model", type=Path, required=True, help="output of model/build_model.py")
    parser.add_argument("--node-modules", type=Path, required=True, help="npm ci's node_modules folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = build(args.site, args.model, args.node_modules, args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file() and p.suffix != ".gz")
    print(f"site built in {args.out}: onnxruntime-web {config['ortVersion']}, {total / 1e6:.1f} MB uncompressed")
    print(json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
