"""lm-eval's tasks as `accel eval` sees them: the task manager over lm-eval's own tasks plus local YAMLs
(`include_path`), names checked with close-name suggestions, and the tasks loaded (their datasets
fetched) before any model loads: a dataset that cannot be had — the hub unreachable, a local file
missing — is one `DatasetUnavailableError` naming it, and each task's request type is known (so a
loglikelihood task for a method that cannot score fails first)."""
from __future__ import annotations

import contextlib
import difflib
import logging
from functools import lru_cache

from datasets.exceptions import DatasetsError
from lm_eval.api.task import Task
from lm_eval.tasks import TaskManager

from accel.evaluation.errors import DatasetUnavailableError, UnknownEvalTaskError

GENERATE = "generate_until"
"""The one request type every method serves; the others ask for loglikelihoods."""


def task_manager(include_path: str | None = None) -> TaskManager:
    """lm-eval's TaskManager with the local task folder `include_path` (its YAMLs take precedence).

    One per folder and process: indexing lm-eval's ~10,000 YAMLs takes seconds, and the index is only
    read afterwards (each `load` builds new task objects)."""
    logging.getLogger("lm-eval").setLevel(logging.WARNING)  # its per-task INFO lines would bury the table
    return _manager(str(include_path) if include_path else None)


@lru_cache(maxsize=8)
def _manager(include_path: str | None) -> TaskManager:
    return TaskManager(include_path=include_path)


def close_names(name: str, known: list[str], groups: frozenset = frozenset(), n: int = 5) -> list[str]:
    """Suggestions for an unknown task: the groups that have `name` as a whole word (``math`` ->
    hendrycks_math, minerva_math), spelling neighbours, then the shortest tasks with that word."""
    word = name.lower()
    parts = [k for k in known if word in k.lower().replace("-", "_").split("_")]
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    ranked = sorted((k for k in parts if k in groups), key=lambda k: (len(k), k)) + close + sorted(
        (k for k in parts if k not in groups), key=lambda k: (len(k), k))
    return list(dict.fromkeys(ranked))[:n]


def check_tasks(tm: TaskManager, names: list[str]) -> list[str]:
    """`names` (tasks, groups or tags lm-eval knows), each checked; an unknown one names the close ones."""
    known = set(tm.all_tasks) | set(tm.all_groups) | set(tm.all_tags)
    for n in names:
        if n not in known:
            raise UnknownEvalTaskError(n, close_names(n, sorted(known), frozenset(tm.all_groups)))
    return list(dict.fromkeys(names))


def output_types(tm: TaskManager, names: list[str]) -> dict[str, str]:
    """{leaf task: its output type} (generate_until, loglikelihood, multiple_choice, loglikelihood_rolling);
    loading them fetches their datasets (`dataset_errors` turns a failure into one line)."""
    with dataset_errors():
        loaded = tm.load(list(names))
    return {name: task.get_config("output_type") or GENERATE for name, task in loaded["tasks"].items()}


@contextlib.contextmanager
def dataset_errors():
    """Turns a dataset that cannot be loaded inside lm-eval (an unreachable hub, a missing local file)
    into `DatasetUnavailableError` naming the task and its dataset."""
    try:
        yield
    except (OSError, DatasetsError) as e:
        task, dataset = _failing_dataset(e)
        if task is None:
            raise
        raise DatasetUnavailableError(task, dataset, _unreachable(e), _first_line(e)) from e


def _failing_dataset(exc: BaseException) -> tuple[str | None, str]:
    """(task, dataset) of the lm-eval task whose download raised `exc` (the innermost Task frame)."""
    task, dataset = None, ""
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        cfg = getattr(obj, "config", None) if isinstance(obj, Task) else None
        if cfg is not None and getattr(cfg, "dataset_path", None):
            task = cfg.task
            dataset = cfg.dataset_path + (f" ({cfg.dataset_name})" if getattr(cfg, "dataset_name", None) else "")
        tb = tb.tb_next
    return task, dataset


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the hub could not be reached (rather than a missing file)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ConnectionError) or type(exc).__name__ in ("LocalEntryNotFoundError",
                                                                      "OfflineModeIsEnabled", "ConnectError"):
            return True
        if "Couldn't reach" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
