"""The official configs' ``!!python/object/apply:eval`` lists load without running code."""
import time

import pytest

from mask2former.config import get_cfg
from mask2former.config.yaml_loader import ExpressionLimitError, safe_eval_expression


def test_official_min_size_train_expression(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text(
        "INPUT:\n"
        '  MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 640) for x in range(5, 21)]"]\n'
    )
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [320, 384, 448, 512, 576, 640, 704, 768, 832, 896,
                                              960, 1024, 1088, 1152, 1216, 1280]


@pytest.mark.parametrize("expression", [
    "__import__('os').system('touch /tmp/pwned')",
    "[x.__class__ for x in range(3)]",
    "open('/etc/passwd')",
])
def test_code_in_eval_tag_is_refused(tmp_path, expression):
    path = tmp_path / "evil.yaml"
    path.write_text(f'INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval ["{expression}"]\n')
    with pytest.raises(ValueError, match="evil.yaml"):
        get_cfg().merge_from_file(str(path))


def test_safe_eval_arithmetic():
    assert safe_eval_expression("[2 ** k for k in range(3) if k > 0]") == [2, 4]
    assert safe_eval_expression("(-1, 0.5 * 4)") == (-1, 2.0)


# ---- bounded evaluation (issue: "[9**9**9]" and range(10**10) used to hang the loader) -----------
@pytest.mark.parametrize("expression, culprit", [
    ("[9**9**9]", "exponent"),
    ("range(10**10)", "range of 10000000000 elements"),
    ("[x for x in range(10**10)]", "range of 10000000000 elements"),
    ("[0] * 10**9", "repetition of 1000000000 elements"),
    ("2**64 * 2**64 * 2**64", "bits"),
    ("[[y for y in range(9000)] for x in range(9000)]", "steps"),
    ("1e308 * 10", "non-finite"),
    ("[" + "1," * 3000 + "]", "characters"),
])
def test_expensive_expressions_are_refused_quickly(expression, culprit):
    start = time.perf_counter()
    with pytest.raises(ExpressionLimitError, match=culprit):
        safe_eval_expression(expression)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("expression", ["1 / 0", "int(1e400)", "list(3)", "round(1.5, 2, 3)"])
def test_arithmetic_errors_become_value_errors(expression):
    with pytest.raises(ValueError):
        safe_eval_expression(expression)


def test_bounded_expression_in_a_config_names_the_file(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text('INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval ["[9**9**9]"]\n')
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"huge\.yaml.*exponent 387420489 exceeds the limit of 64"):
        get_cfg().merge_from_file(str(path))
    assert time.perf_counter() - start < 2.0


def test_every_official_expression_form_stays_within_the_bounds():
    # the forms used by the official configs (ADE20K / COCO / Cityscapes / Mapillary LSJ lists)
    assert safe_eval_expression("[int(x * 0.1 * 512) for x in range(5, 21)]")[-1] == 1024
    assert safe_eval_expression("[int(x * 0.1 * 1024) for x in range(5, 21)]")[0] == 512
    assert safe_eval_expression("[0] * 16") == [0] * 16
    assert safe_eval_expression("2 ** 10") == 1024


def test_deep_flow_nesting_is_refused_at_once(tmp_path):
    # PyYAML needs ~3 s for 2000 nested '[' and grows steeply: a 20 kB config could stall for hours
    path = tmp_path / "nested.yaml"
    path.write_text("INPUT:\n  MIN_SIZE_TRAIN: " + "[" * 20000 + "\n")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"nested\.yaml.*nested more than 100 levels"):
        get_cfg().merge_from_file(str(path))
    assert time.perf_counter() - start < 1.0


def test_brackets_inside_quotes_do_not_count():
    from mask2former.config.yaml_loader import load_yaml

    assert load_yaml('A: "' + "[" * 300 + '"\nB: [[1], {c: 2}]\n') == {"A": "[" * 300, "B": [[1], {"c": 2}]}
