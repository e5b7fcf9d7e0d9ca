"""The official configs' ``!!python/object/apply:eval`` lists load without running code."""
import pytest

from mask2former.config import get_cfg
from mask2former.config.yaml_loader import safe_eval_expression


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
