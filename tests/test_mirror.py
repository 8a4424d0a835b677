"""The harness finds the provider mirror itself, so `make`, plain `pytest` and `python -m
harness` plan offline too: TF_PLUGIN_DIR first, else the first registry.terraform.io/hashicorp/aws
in the usual places."""

import pytest

from harness.errors import DependencyMissing
from harness.plan import terraform as tf

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def mirror(root, *parts):
    folder = root.joinpath(*parts, "registry.terraform.io", "hashicorp", "aws", "5.100.0")
    folder.mkdir(parents=True)
    return str(root.joinpath(*parts))


def test_found_within_four_levels_and_not_deeper(tmp_path):
    near, far = tmp_path / "near", tmp_path / "far"
    expected = mirror(near, "tools", "tf-plugins")
    mirror(far, "a", "b", "c", "d")  # registry.terraform.io five levels down
    assert tf.find_mirror((str(far), str(near))) == expected
    assert tf.find_mirror((str(far),)) is None


def test_a_registry_folder_without_the_aws_provider_is_not_a_mirror(tmp_path):
    (tmp_path / "x" / "registry.terraform.io" / "hashicorp" / "random").mkdir(parents=True)
    assert tf.find_mirror((str(tmp_path),)) is None


def test_tf_plugin_dir_wins_and_a_wrong_one_is_an_error(tmp_path, monkeypatch):
    chosen = mirror(tmp_path, "chosen")
    monkeypatch.setenv(tf.PLUGIN_ENV, chosen)
    assert tf.plugin_dir() == chosen
    monkeypatch.setenv(tf.PLUGIN_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DependencyMissing, match="TF_PLUGIN_DIR"):
        tf.plugin_dir()
    monkeypatch.delenv(tf.PLUGIN_ENV)
    monkeypatch.setattr(tf, "find_mirror", lambda: chosen)
    assert tf.plugin_dir() == chosen  # unset: found in the usual places
