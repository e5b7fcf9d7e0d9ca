"""Engine: predictor, trainer, hooks, argument parsing and multi-process launch."""
from . import hooks
from .arguments import default_argument_parser, default_setup
from .default_trainer import DefaultTrainer, build_evaluator, create_ddp_model, default_writers
from .defaults import DefaultPredictor
from .launch import launch
from .train_loop import AMPTrainer, HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase

__all__ = [
    "AMPTrainer", "DefaultPredictor", "DefaultTrainer", "HookBase", "NonFiniteLossError",
    "SimpleTrainer", "TrainerBase", "build_evaluator", "create_ddp_model", "default_argument_parser",
    "default_setup", "default_writers", "hooks", "launch",
]
