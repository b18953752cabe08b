"""lm-eval's tasks as `accel eval` sees them: the task manager over lm-eval's own tasks plus local YAMLs
(`include_path`), names checked with close-name suggestions, and the tasks loaded (their datasets
fetched) before any model loads: a dataset that cannot be had — the hub unreachable, a local file
missing — is one `DatasetUnavailableError` naming it, and each task's request type is known (so a
loglikelihood task for a method that cannot score fails first)."""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import sys
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
    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its per-task INFO lines would bury the table
    return _manager(str(include_path) if include_path else None)


@lru_cache(maxsize=8)
def _manager(include_path: str | None) -> TaskManager:
    return TaskManager(include_path=include_path)


class LmEvalWarnings(logging.Handler):
    """Where `accel eval` sends lm-eval's warnings (its task-config defaults: "metric acc is defined, but
    aggregation is not", ...): each distinct message once per run, though lm-eval repeats them on every task
    load (once per method), and none while `held()` — the checks before the model loads, so a bad input
    stays one line; they are shown when the checks pass."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("lm-eval: %(message)s"))
        self.seen: set[str] = set()
        self.kept: list[logging.LogRecord] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg in self.seen:
            return
        self.seen.add(msg)
        if self.kept is not None:
            self.kept.append(record)
        else:
            self._write(record)

    @contextlib.contextmanager
    def held(self):
        """Keeps the warnings back; shows them after the block, or drops them when it raises."""
        self.kept = []
        try:
            yield
        except BaseException:
            self.kept = None
            raise
        kept, self.kept = self.kept, None
        for record in kept:
            self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")

    @classmethod
    def install(cls) -> "LmEvalWarnings":
        """This process's handler on lm-eval's logger (in place of Python's last-resort one), reset for a run."""
        logger = logging.getLogger("lm_eval")
        handler = next((h for h in logger.handlers if isinstance(h, cls)), None)
        if handler is None:
            handler = cls()
            logger.addHandler(handler)
        logger.propagate = False
        handler.seen.clear()
        return handler


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
    with dataset_errors(names):
        loaded = tm.load(list(names))
    return {name: task.get_config("output_type") or GENERATE for name, task in loaded["tasks"].items()}


@contextlib.contextmanager
def dataset_errors(names: list[str] | None = None):
    """Turns a dataset that cannot be loaded inside lm-eval (an unreachable hub, a missing local file)
    into `DatasetUnavailableError` naming the task and its dataset; a metric that lm-eval's task code loads
    from the hub with `evaluate.load` (mbpp and humaneval's code_eval) names the metric and the tasks `names`."""
    try:
        yield
    except (OSError, DatasetsError) as e:
        task, dataset = _failing_dataset(e)
        if task is not None:
            raise DatasetUnavailableError(task, dataset, _unreachable(e), _first_line(e)) from e
        module = _hub_module(e)
        if module is None:
            raise
        raise DatasetUnavailableError(", ".join(names or ()) or "?", f"{module} (lm-eval's task code loads it with "
                                      "evaluate.load)", _unreachable(e), _first_line(e), what="metric") from e


def _hub_module(exc: BaseException) -> str | None:
    """The `evaluate` module (metric) whose load from the hub raised `exc`, if that is what raised it."""
    tb, inside = exc.__traceback__, False
    while tb is not None:
        inside = inside or tb.tb_frame.f_code.co_filename.endswith(os.path.join("evaluate", "loading.py"))
        tb = tb.tb_next
    found = re.search(r"Module '([^']+)'", str(exc))
    return (found.group(1) if found else "?") if inside else None


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
        if "Couldn't reach" in str(exc) or "doesn't exist on the Hugging Face Hub" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
