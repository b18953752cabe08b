"""Whether the Hugging Face Hub can be reached, checked once before lm-eval loads its tasks' datasets.

Offline, `datasets` retries each hub request five times with a growing back-off (about half a minute
per dataset) before it fails. `accel eval` asks once, with a short connection attempt, and when the
hub cannot be reached sets the libraries' documented offline switches (``HF_HUB_OFFLINE``,
``HF_DATASETS_OFFLINE``) before they are imported: cached datasets still load, a missing one fails at
once and `accel.evaluation.tasks.dataset_errors` names it. Standard library only (this runs before
lm-eval is imported).
"""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_reachable(endpoint: str | None = None, timeout_s: float = 3.0) -> bool | None:
    """True/False: a TCP connection to the hub's endpoint (``HF_ENDPOINT`` or huggingface.co) opens or
    not within `timeout_s`; None: not checked (a proxy is configured, so a direct connection says nothing)."""
    if any(os.environ.get(v) for v in PROXY_VARS):
        return None
    url = urlsplit(endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_unless_reachable(timeout_s: float = 3.0) -> bool:
    """Sets the offline switches when the hub cannot be reached and the user set none; returns whether
    it did. Only effective before huggingface_hub and datasets are imported (they read them at import): once
    they are (a caller in the same process), nothing is checked or set."""
    if {"datasets", "huggingface_hub"} & set(sys.modules) or any(v in os.environ for v in OFFLINE_VARS):
        return False
    if hub_reachable(timeout_s=timeout_s) is not False:
        return False
    for v in OFFLINE_VARS:
        os.environ[v] = "1"
    return True
