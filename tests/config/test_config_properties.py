"""Property-based tests: random YAML text, random bytes and random ``eval`` expressions either load
or fail with the config loader's documented errors (ValueError, ConfigKeyError, FileNotFoundError
for a missing _BASE_), quickly."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mask2former.config import get_cfg
from mask2former.config.config import ConfigKeyError
from mask2former.config.yaml_loader import load_yaml, safe_eval_expression

DOCUMENTED = (ValueError, ConfigKeyError, FileNotFoundError)  # FileNotFoundError: a missing _BASE_
TIME_BOUND_S = 5.0  # generous: the test machine may be loaded
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# small grammar of the expression language (and of things outside it)
_atoms = st.sampled_from(["0", "1", "2", "9", "10", "0.5", "1e308", "-3", "x", "y", "range(3)",
                          "range(10**10)", "[1, 2]", "()", "'s'", "None", "__import__"])
_ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "==", " for x in ", " if "])


@st.composite
def _expressions(draw) -> str:
    parts = [draw(_atoms)]
    for _ in range(draw(st.integers(0, 5))):
        parts += [draw(_ops), draw(_atoms)]
    text = "".join(parts)
    wrap = draw(st.sampled_from(["{}", "[{}]", "({})", "int({})", "[{} for x in range(4)]", "list({})"]))
    return wrap.format(text)


def _bounded(fn, *args):
    start = time.perf_counter()
    try:
        fn(*args)
    except DOCUMENTED:
        pass
    assert time.perf_counter() - start < TIME_BOUND_S


@SETTINGS
@given(_expressions())
def test_eval_tag_expressions_evaluate_or_raise_value_error(expression):
    _bounded(safe_eval_expression, expression)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_as_expression(expression):
    _bounded(safe_eval_expression, expression)


_yaml_scalars = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(),
                          st.text(max_size=10), st.lists(st.integers(0, 2000), max_size=4))
_keys = st.sampled_from(["MODEL", "SOLVER", "INPUT", "BASE_LR", "MAX_ITER", "MIN_SIZE_TRAIN", "NOPE",
                         "_BASE_", "WEIGHTS", "OUTPUT_DIR", "SEED"])
_trees = st.recursive(_yaml_scalars, lambda children: st.dictionaries(_keys, children, max_size=4), max_leaves=12)


@SETTINGS
@given(st.dictionaries(_keys, _trees, max_size=4))
def test_random_config_trees_merge_or_raise_documented_errors(tmp_path, tree):
    import yaml

    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(tree))
    _bounded(get_cfg().merge_from_file, str(path))


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list(":-[]{}!&*#|>'\"%@`, \n\tabc019")), max_size=120))
def test_random_yaml_text_parses_or_raises_value_error(text):
    _bounded(load_yaml, text, "random.yaml")


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_as_config_file(tmp_path, data):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    _bounded(get_cfg().merge_from_file, str(path))


@pytest.mark.parametrize("text", ["[" * 5000, "{a: " * 3000, "- " * 5000 + "1"])
def test_deeply_nested_yaml_is_a_value_error(text):
    _bounded(load_yaml, text, "deep.yaml")
