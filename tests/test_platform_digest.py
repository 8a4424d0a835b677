"""The applied platform skips an apply of what its state already holds: same tfvars and same
Terraform, by content (an edited copy of the Terraform at the same path is a different plan)."""

import pytest

from harness.rehearsal.platform import digest_of

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_the_digest_changes_with_the_tfvars_or_any_terraform_file_and_ignores_the_provider_cache(tmp_path):
    src = tmp_path / "tf"
    (src / "modules" / "m").mkdir(parents=True)
    (src / "main.tf").write_text('module "m" { source = "./modules/m" }\n')
    (src / "modules" / "m" / "main.tf").write_text("# grace 120\n")
    var_file = tmp_path / "staging.tfvars"
    var_file.write_text('environment = "staging"\n')
    first = digest_of(var_file, src)
    assert digest_of(var_file, src) == first
    (src / ".terraform").mkdir()
    (src / ".terraform" / "cache.tf").write_text("# the provider cache\n")
    assert digest_of(var_file, src) == first
    (src / "modules" / "m" / "main.tf").write_text("# grace 60\n")
    edited = digest_of(var_file, src)
    assert edited != first
    var_file.write_text('environment = "staging"\ndeployment_strategy = "blue_green"\n')
    assert digest_of(var_file, src) not in (first, edited)
