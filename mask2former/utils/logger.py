"""Logging set-up: coloured console lines and a plain log file per process."""
from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Optional

from termcolor import colored

__all__ = ["setup_logger", "log_first_n"]


class _ColorfulFormatter(logging.Formatter):
    def __init__(self, *args, root_name: str, abbrev_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._root_name = root_name + "."
        self._abbrev_name = (abbrev_name + ".") if abbrev_name else ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.name = record.name.replace(self._root_name, self._abbrev_name)
        log = super().formatMessage(record)
        if record.levelno == logging.WARNING:
            prefix = colored("WARNING", "red", attrs=["blink"])
        elif record.levelno in (logging.ERROR, logging.CRITICAL):
            prefix = colored("ERROR", "red", attrs=["blink", "underline"])
        else:
            return log
        return prefix + " " + log


@functools.lru_cache()
def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, *, color: bool = True,
                 name: str = "mask2former", abbrev_name: Optional[str] = None) -> logging.Logger:
    """Configure logger ``name``: console on rank 0, and ``output`` (file or dir) on every rank.

    A directory ``output`` gets ``log.txt`` (rank 0) or ``log.txt.rank{r}``.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    abbrev_name = "m2f" if abbrev_name is None and name == "mask2former" else (abbrev_name or name)
    plain = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s",
                              datefmt="%m/%d %H:%M:%S")
    if distributed_rank == 0:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setLevel(logging.DEBUG)
        if color:
            handler.setFormatter(_ColorfulFormatter(
                colored("[%(asctime)s %(name)s]: ", "green") + "%(message)s",
                datefmt="%m/%d %H:%M:%S", root_name=name, abbrev_name=str(abbrev_name)))
        else:
            handler.setFormatter(plain)
        logger.addHandler(handler)
    if output is not None:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        file_handler = logging.FileHandler(filename, mode="a")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(plain)
        logger.addHandler(file_handler)
    return logger


_LOG_COUNTER: dict = {}


def log_first_n(level: int, msg: str, n: int = 1, *, name: str = "mask2former", key: str = "msg") -> None:
    """Log ``msg`` only the first ``n`` times it is seen (keyed by the message text)."""
    counter_key = (name, msg) if key == "msg" else (name, key)
    _LOG_COUNTER[counter_key] = _LOG_COUNTER.get(counter_key, 0) + 1
    if _LOG_COUNTER[counter_key] <= n:
        logging.getLogger(name).log(level, msg)
