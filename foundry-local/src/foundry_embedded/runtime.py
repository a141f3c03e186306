"""The Foundry Local runtime, in-process: start it, choose and prepare a model, report where it is.

The runtime's own web service listens on 127.0.0.1 on a port it picks; only the gateway talks to it.
Model preparation (download, registration, load) runs in a background thread so that `/healthz`
can report progress while it happens (and `/readyz` says when it is over).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from foundry_embedded import archive
from foundry_embedded.batched.process import BatchedEngine
from foundry_embedded.metrics import Metrics
from foundry_embedded.settings import Settings

log = structlog.get_logger("foundry_embedded.runtime")

PUBLIC_API_BASE = "/v1"
LOCAL_API_BASE = "/catalogs/local/v1"  # models registered from a folder (BYOM) are served here
ARCHIVES_DIR = "models-from-url"  # under the data folder: the model folder FOUNDRY_MODEL_URL gave

# How the runtime refuses every request with `tools` (unless tool_choice is "none") for a model whose tokenizer
# publishes no tool-call boundary tokens: ONNX Runtime GenAI reads them from genai_config.json's "model" section
# (`bot_token_id`, `eot_token_id`; for some older Qwen and Phi packages it finds them by model type), and Foundry
# Local builds its tool-call grammar from them. Read once per load, by the probe below.
NO_TOOL_MARKERS = "model-published opening and closing tool markers"
PROBE_TOOL = {
    "type": "function",
    "function": {"name": "probe", "description": "Never called.", "parameters": {"type": "object", "properties": {}}},
}


@dataclass(frozen=True)
class ServedModel:
    id: str  # what clients send as "model"
    alias: str
    api_base: str
    context_length: int | None
    # Whether the runtime takes `tools` for this model: True, False (the model publishes no tool-call markers,
    # the gateway then serves such requests without their tools), None when the probe could not tell.
    tool_calls: bool | None = None
    # Where its chat completions go: None, the runtime's own service; else the batched engine's loopback URL.
    base_url: str | None = None


@dataclass(frozen=True)
class Download:
    percent: float = 0.0
    bytes_per_second: float | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class Status:
    state: str
    message: str
    model: str | None = None
    download: Download | None = None
    models: tuple[ServedModel, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def find(self, name: str) -> ServedModel | None:
        """A served model by the id clients send, or by its alias as a convenience."""
        return next((m for m in self.models if m.id == name), None) or next(
            (m for m in self.models if m.alias == name), None
        )


class DownloadReport:
    """One download's progress as /healthz (state "downloading"), the download metric and the log show it.

    The catalog's download reports a percent, an archive's the bytes received: both end up as the same Status.
    """

    def __init__(self, runtime: EmbeddedRuntime, model: str, what: str, size: int | None = None) -> None:
        self._runtime, self._model, self._what, self.size = runtime, model, what, size
        self._started = time.monotonic()
        self._logged = (-1.0, 0.0)  # percent, seconds
        runtime._set(Status("downloading", f"Downloading {what}.", model=model, download=Download(0.0, None, size)))

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 1)

    def percent(self, percent: float) -> None:
        elapsed = time.monotonic() - self._started
        speed = self.size * percent / 100 / elapsed if self.size and elapsed > 0 else None
        self._report(percent, speed, f"{percent:.0f}%")

    def received(self, done: int, size: int | None) -> None:
        self.size = size
        elapsed = time.monotonic() - self._started
        speed = done / elapsed if elapsed > 0 else None
        if size:
            self._report(100 * done / size, speed, f"{100 * done / size:.0f}% of {size / 1e6:.1f} MB")
        else:  # the server sent no Content-Length: bytes, no percent
            self._report(0.0, speed, f"{done / 1e6:.1f} MB so far")

    def unpacking(self) -> None:
        self._runtime._set(Status("loading", f"Unpacking {self._what}.", model=self._model))

    def _report(self, percent: float, speed: float | None, progress: str) -> None:
        if self._runtime._cancel.is_set():
            return  # stopping: /healthz says so, not a progress that is over
        download = Download(round(percent, 1), speed and round(speed), self.size)
        self._runtime._set(
            Status("downloading", f"Downloading {self._what}: {progress}.", model=self._model, download=download)
        )
        self._runtime._metrics.download_progress.labels(self._model).set(percent / 100)
        # One line per 5 % or per 10 s, whichever comes first: visible progress, quiet logs.
        elapsed = time.monotonic() - self._started
        if percent - self._logged[0] >= 5 or elapsed - self._logged[1] >= 10 or percent >= 100:
            self._logged = (percent, elapsed)
            log.info("model_download", model=self._model, percent=round(percent, 1), bytes_per_second=speed)


class EmbeddedRuntime:
    """Owns the FoundryLocalManager singleton for the life of the process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._manager = None
        self._status = Status("starting", "Starting the Foundry Local runtime.")
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        self._engine = BatchedEngine()
        metrics.state.state("starting")

    @property
    def status(self) -> Status:
        return self._status  # replaced whole, never mutated: safe to read from any thread

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runtime and its loopback web service, then prepare the model in the background."""
        from foundry_local_sdk import Configuration, FoundryLocalManager, LogLevel

        data = self._settings.data_dir
        for sub in ("app", "models", "logs"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        config = Configuration(
            app_name="foundry-embedded",
            app_data_dir=str(data / "app"),
            model_cache_dir=str(data / "models"),
            logs_dir=str(data / "logs"),
            log_level=LogLevel.WARNING,
            web=Configuration.WebService(urls="http://127.0.0.1:0"),
            disable_nonessential_telemetry=True,
        )
        started = time.perf_counter()
        self._manager = FoundryLocalManager(config)
        self._manager.start_web_service()
        self.base_url = self._manager.urls[0].rstrip("/")
        log.info("runtime_started", url=self.base_url, seconds=round(time.perf_counter() - started, 3))
        self._thread = threading.Thread(target=self._prepare_model, name="prepare-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Unload the model and stop the runtime; exit the process if the native side hangs."""
        self._cancel.set()
        self._set(replace(self._status, state="stopping", message="Stopping."))
        self._engine.stop()
        if self._manager is None:
            return
        closer = threading.Thread(target=self._manager.close, name="close-runtime", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            log.warning("runtime_stop_timeout", seconds=timeout)
            os._exit(0)  # the process is ending anyway; don't let Docker's SIGKILL be the way out
        self._manager = None
        log.info("runtime_stopped")

    # -- model preparation ---------------------------------------------------------------------

    def _prepare_model(self) -> None:
        settings = self._settings
        try:
            if settings.foundry_model_url is not None:
                served = self._prepare_archive(settings.foundry_model_url)
            elif settings.foundry_model_path is not None:
                served = self._prepare_local(settings.foundry_model_path, settings.local_model_id)
            else:
                served = self._prepare_catalog(settings.foundry_model)
            if served is None:
                return
            self._metrics.model_loaded.labels(served.id).set(1)
            self._set(Status("ready", f"Serving {served.id}.", model=served.id, models=(served,)))
            log.info("model_ready", model=served.id, alias=served.alias, api_base=served.api_base)
        except Exception as exc:  # the service stays up to say what went wrong
            if self._cancel.is_set():
                return
            log.exception("model_failed")
            self._set(
                Status(
                    "failed",
                    f"Preparing the model failed: {exc}. Check FOUNDRY_MODEL_URL / FOUNDRY_MODEL_PATH / "
                    "FOUNDRY_MODEL, then restart the service.",
                    model=str(
                        (settings.foundry_model_url and archive.shown(settings.foundry_model_url))
                        or settings.foundry_model_path
                        or settings.foundry_model
                    ),
                )
            )

    def _prepare_archive(self, url: str) -> ServedModel | None:
        """FOUNDRY_MODEL_URL: the model folder from the data volume, downloaded first if this URL's is not there."""
        name = self._settings.archive_name
        model_id = self._settings.model_id_for(name)
        root = self._settings.data_dir / ARCHIVES_DIR
        folder = archive.folder_for(root, url, name)
        if (folder / archive.CONFIG).is_file():
            log.info("model_archive_cached", url=archive.shown(url), path=str(folder))
            return self._prepare_local(folder, model_id)
        report = DownloadReport(self, model_id, f"{model_id} from {archive.shown(url)}")
        log.info("model_download_started", model=model_id, url=archive.shown(url))
        try:
            folder = archive.install(url, name, root, report.received, self._cancel, report.unpacking)
        except archive.ArchiveError as exc:
            if self._cancel.is_set():
                return None  # stopping: a connection cut by the stop is no failure to report
            self._set(Status(exc.state, exc.message, model=model_id))
            log.error("model_archive_failed", model=model_id, state=exc.state, error=exc.message)
            return None
        log.info("model_downloaded", model=model_id, path=str(folder), seconds=report.seconds)
        return self._prepare_local(folder, model_id)

    def _prepare_local(self, path: Path, model_id: str) -> ServedModel | None:
        from foundry_local_sdk import CatalogType, ModelInfoBuilder

        if not (path / "genai_config.json").is_file():
            self._set(
                Status(
                    "no_model",
                    f"FOUNDRY_MODEL_PATH={path} is not an ONNX Runtime GenAI model folder "
                    "(no genai_config.json in it). Point it at a folder built by scripts/make-model "
                    "or exported with onnxruntime_genai.models.builder.",
                    model=str(path),
                )
            )
            log.error("model_folder_invalid", path=str(path))
            return None
        catalog = self._manager.get_catalog(CatalogType.LOCAL)
        model = catalog.get_model_variant(model_id)
        if model is not None and Path(model.get_path()).resolve() != path.resolve():
            # Same id, different folder: the registration is stale, replace it.
            catalog.unregister_model(model_id)
            model = None
        if model is None:
            with ModelInfoBuilder() as metadata:
                metadata.set_string_property("task", "chat-completion")
                metadata.set_string_property("display_name", path.name)
                model = catalog.register_model(model_path=path, model_id=model_id, metadata=metadata)
            log.info("model_registered", model=model_id, path=str(path))
        return self._load(model, LOCAL_API_BASE)

    def _prepare_catalog(self, alias: str) -> ServedModel | None:
        catalog = self._manager.get_catalog()
        model = catalog.get_model(alias)
        if model is None:
            self._set(
                Status(
                    "no_model",
                    f"Model '{alias}' is not available: the Foundry Local catalog could not be reached "
                    "or has no such alias, and FOUNDRY_MODEL_PATH is not set. Offline, set "
                    "FOUNDRY_MODEL_PATH to a local model folder (scripts/make-model builds one), or "
                    "FOUNDRY_MODEL_URL to a .tar.gz of one on a web server you reach; "
                    "online, set FOUNDRY_MODEL to a catalog alias such as qwen2.5-0.5b.",
                    model=alias,
                )
            )
            log.error("model_unavailable", model=alias)
            return None
        if not model.is_cached:
            self._download(model)
        return self._load(model, PUBLIC_API_BASE)

    def _download(self, model) -> None:
        size_mb = model.info.file_size_mb
        report = DownloadReport(self, model.id, model.id, size_mb * 1024 * 1024 if size_mb else None)
        log.info("model_download_started", model=model.id, size_bytes=report.size)
        model.download(progress_callback=report.percent, cancel_event=self._cancel)
        log.info("model_downloaded", model=model.id, seconds=report.seconds)

    def _load(self, model, api_base: str) -> ServedModel:
        self._set(Status("loading", f"Loading {model.id}.", model=model.id))
        started = time.perf_counter()
        if self._settings.foundry_engine == "batched":
            return self._load_batched(model, started)
        model.load()
        log.info("model_loaded", model=model.id, seconds=round(time.perf_counter() - started, 3))
        tool_calls = self._probe_tool_calls(model.id, api_base)
        return ServedModel(
            id=model.id,
            alias=model.alias,
            api_base=api_base,
            context_length=model.context_length,
            tool_calls=tool_calls,
        )

    def _load_batched(self, model, started: float) -> ServedModel:
        """FOUNDRY_ENGINE=batched: the batched engine serves the folder the runtime prepared (the runtime does not
        load it: one copy of the weights in memory). It cannot call tools: the gateway serves such requests without
        them, as for a model without tool-call markers."""
        url = self._engine.start(Path(model.get_path()), model.id, self._cancel)
        log.info("model_loaded", model=model.id, engine="batched", seconds=round(time.perf_counter() - started, 3))
        return ServedModel(id=model.id, alias=model.alias, api_base=PUBLIC_API_BASE,
                           context_length=model.context_length, tool_calls=False, base_url=url)  # fmt: skip

    def _probe_tool_calls(self, model_id: str, api_base: str) -> bool | None:
        """Ask the runtime itself whether it takes `tools` for this model: one request of a few output tokens.

        The answer depends on the model folder and on how this runtime version reads it, so the runtime is asked
        rather than the folder read here. Only its 'tool markers' refusal means no: any other answer (even a failed
        generation, as a budget this small can cause) came after it accepted the tools.
        """
        body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "tools": [PROBE_TOOL],
                "tool_choice": "auto", "max_tokens": 8}  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 - the runtime's own loopback URL
            f"{self.base_url}{api_base}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            timeout = self._settings.upstream_timeout_seconds
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
                response.read()
            tool_calls = True
        except urllib.error.HTTPError as exc:
            tool_calls = NO_TOOL_MARKERS not in exc.read().decode("utf-8", "replace")
        except (OSError, TimeoutError) as exc:
            log.warning("tool_calls_unknown", model=model_id, error=f"{type(exc).__name__}: {exc}")
            return None
        if tool_calls:
            log.info("tool_calls_probed", model=model_id, tool_calls=True)
        else:
            # The runtime has just logged its refusal of the probe as an error: say what it means.
            log.info(
                "tool_calls_probed",
                model=model_id,
                tool_calls=False,
                message="The runtime's 'tool markers' error just before answers the gateway's probe: this model "
                "cannot call tools (no bot_token_id/eot_token_id in its genai_config.json); requests with tools are "
                "served without them, with the X-Foundry-Tools-Ignored header.",
            )
        return tool_calls

    def _set(self, status: Status) -> None:
        self._status = status
        self._metrics.state.state(status.state)
