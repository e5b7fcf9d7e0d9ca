"""``launch``: run a function in one process or many (several GPUs, CPU processes, machines)."""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm

__all__ = ["launch", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(main_func: Callable, num_gpus_per_machine: int, num_machines: int = 1,
           machine_rank: int = 0, dist_url: Optional[str] = None, args: Sequence = (),
           timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    * Under ``torchrun`` (``WORLD_SIZE`` set in the environment) the process group is created
      from the environment and ``main_func`` runs in this process.
    * With one process in total it simply calls ``main_func``.
    * Otherwise it spawns one process per local GPU (or per requested CPU process when CUDA is
      absent), using NCCL on GPUs and gloo on CPU. ``dist_url="auto"`` picks a free local port
      (single machine only).
    """
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and "RANK" in os.environ:
        _init_from_env(timeout)
        main_func(*args)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines > 1:
            raise ValueError("dist_url='auto' is not supported with several machines; "
                             "pass --dist-url tcp://<main-machine-ip>:<port>")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init may be unreliable across machines: %s", dist_url)
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout),
        daemon=False,
        start_method="spawn",
    )


def _init_from_env(timeout: timedelta) -> None:
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=_backend(), init_method="env://", timeout=timeout)
    _synchronize()


def _distributed_worker(local_rank: int, main_func: Callable, world_size: int,
                        num_gpus_per_machine: int, machine_rank: int, dist_url: str,
                        args: tuple, timeout: timedelta) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(f"Asked for {num_gpus_per_machine} GPUs per machine but only "
                           f"{torch.cuda.device_count()} are visible")
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(num_gpus_per_machine)
    os.environ["RANK"] = str(global_rank)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend=_backend(), init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)
    except Exception as err:
        raise RuntimeError(f"Process group URL {dist_url} could not be initialised: {err}") from err
    _synchronize()
    try:
        main_func(*args)
        _synchronize()  # let every peer finish its last collective before connections close
    finally:
        comm.forget_process_groups()
        dist.destroy_process_group()


def _synchronize() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
