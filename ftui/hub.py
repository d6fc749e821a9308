"""Talking to the Hugging Face Hub: reachability, search, dataset configs, and error translation."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ftui.errors import FtuiError, HubError

log = logging.getLogger(__name__)
OFFLINE_MESSAGE = "The Hugging Face Hub cannot be reached from this machine"


@dataclass(frozen=True)
class HubStatus:
    """Whether the Hub answered at start-up, and a sentence for the UI."""

    online: bool
    message: str


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_hub(timeout: float = 3.0) -> HubStatus:
    """Ask the Hub one cheap question with a short timeout; FTUI_OFFLINE=1 skips the network."""
    if os.environ.get("FTUI_OFFLINE", "").lower() in ("1", "true", "yes"):
        return HubStatus(False, f"{OFFLINE_MESSAGE} (FTUI_OFFLINE is set).")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return HubStatus(False, f"{OFFLINE_MESSAGE} (HF_HUB_OFFLINE is set).")
    import httpx

    try:
        r = httpx.get(f"{_endpoint()}/api/models", params={"limit": 1}, timeout=timeout)
        r.raise_for_status()
    except Exception as exc:  # any failure means: work offline
        # The exception's name is for the log; the page says what it means in plain words.
        log.info("Hub check failed: %s: %s", type(exc).__name__, exc)
        return HubStatus(False, f"{OFFLINE_MESSAGE} (no answer within {timeout:g} s).")
    return HubStatus(True, "Connected to the Hugging Face Hub.")


def go_offline() -> None:
    """Make transformers, datasets and huggingface_hub use the local cache only, at once."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets.config
    import huggingface_hub.constants

    # Both libraries read the variable at import time; their module flags are what they consult later.
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def search_datasets(query: str, limit: int = 20, token: str | None = None) -> list[str]:
    """Text-classification datasets matching `query`, most downloaded first."""
    from huggingface_hub import HfApi

    try:
        found = HfApi(token=token or None).list_datasets(
            search=query.strip() or None,
            filter="task_categories:text-classification",
            sort="downloads",
            limit=limit,
        )
        return [d.id for d in found]
    except Exception as exc:
        raise explain_hub_error(exc, "dataset search", query) from exc


def search_models(query: str, limit: int = 20, token: str | None = None) -> list[str]:
    """Fill-mask and text-classification checkpoints matching `query`, most downloaded first."""
    from huggingface_hub import HfApi

    api = HfApi(token=token or None)
    try:
        hits: list[tuple[int, str]] = []
        for tag in ("fill-mask", "text-classification"):
            for m in api.list_models(search=query.strip() or None, pipeline_tag=tag, sort="downloads", limit=limit):
                hits.append((int(getattr(m, "downloads", 0) or 0), m.id))
    except Exception as exc:
        raise explain_hub_error(exc, "model search", query) from exc
    seen: dict[str, int] = {}
    for downloads, mid in hits:
        seen[mid] = max(downloads, seen.get(mid, 0))
    return [mid for mid, _ in sorted(seen.items(), key=lambda kv: -kv[1])][:limit]


def dataset_configs(dataset_id: str, token: str | None = None) -> list[str]:
    """Config names of a Hub dataset (empty list when it has only the default)."""
    import datasets

    try:
        names = datasets.get_dataset_config_names(dataset_id, token=token or None)
    except Exception as exc:
        raise explain_hub_error(exc, "dataset", dataset_id) from exc
    return [n for n in names if n != "default"] if names != ["default"] else []


def dataset_splits(dataset_id: str, config: str | None, token: str | None = None) -> list[str]:
    """Split names of a Hub dataset config."""
    import datasets

    try:
        return list(datasets.get_dataset_split_names(dataset_id, config or None, token=token or None))
    except Exception as exc:
        raise explain_hub_error(exc, "dataset", dataset_id) from exc


def hub_split_rows(dataset_id: str, config: str | None, token: str | None = None) -> dict[str, int]:
    """Rows per split from the dataset's Hub metadata, without downloading its data; empty when unknown."""
    import datasets

    try:
        info = datasets.load_dataset_builder(dataset_id, config or None, token=token or None).info
        return {name: int(split.num_examples) for name, split in (info.splits or {}).items() if split.num_examples}
    except Exception as exc:  # noqa: BLE001 - metadata is a shortcut; the rows are counted after loading anyway
        log.info("no split sizes for %s: %s", dataset_id, exc)
        return {}


def explain_hub_error(exc: BaseException, what: str, name: str) -> FtuiError:
    """Turn a Hub/datasets/transformers exception into a message naming the problem and the fix."""
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, FtuiError):
        return exc
    text = str(exc)
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 6:
        chain.append(chain[-1].__cause__)
    kinds = tuple(type(e) for e in chain)

    def has(kind: type) -> bool:
        return any(issubclass(k, kind) for k in kinds)

    if has(hf_errors.GatedRepoError) or "gated" in text.lower():
        return HubError(
            f"The {what} '{name}' is gated: the Hub needs a token from an account that accepted its terms.",
            "Accept the terms on its Hub page, then paste a read token in 'Hub token'.",
        )
    if has(hf_errors.OfflineModeIsEnabled) or "offline mode" in text.lower() or "outgoing traffic" in text.lower():
        return HubError(
            f"{OFFLINE_MESSAGE}, and the {what} '{name}' is not in the local cache.",
            "Use the bundled demo data / packaged checkpoint, a local file or folder, or connect to the Hub.",
        )
    if (
        has(hf_errors.RepositoryNotFoundError)
        or "DatasetNotFoundError" in type(exc).__name__
        or "doesn't exist on the hub" in text.lower()
        or "not found" in text.lower()
        or ("is not a local folder and is not a valid model identifier" in text)
    ):
        return HubError(
            f"The {what} '{name}' was not found on the Hub (or it is private).",
            "Check the spelling ('owner/name'); for a private repo paste a token in 'Hub token'.",
        )
    if "Config name is missing" in text or "BuilderConfig" in text:
        return HubError(
            f"The {what} '{name}' needs a config (for example glue needs 'sst2').",
            "Pick one in the Config dropdown.",
        )
    if "scripts are no longer supported" in text:
        return HubError(
            f"The {what} '{name}' needs a loading script, which runs code from the Hub; ftui refuses it by default.",
            "Tick 'Trust remote code' to load the Hub's Parquet export of it instead (no code runs), or pick another dataset.",
        )
    if any(isinstance(e, TimeoutError) for e in chain) or "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return HubError(f"The Hub did not answer in time for the {what} '{name}'.", "Try again in a moment.")
    if has(ConnectionError) or "connect" in type(exc).__name__.lower():
        return HubError(
            f"{OFFLINE_MESSAGE} (while loading the {what} '{name}').",
            "Use the bundled demo data / packaged checkpoint or a local path, or try again when online.",
        )
    return HubError(f"Could not load the {what} '{name}': {type(exc).__name__}: {text[:300]}", "")
