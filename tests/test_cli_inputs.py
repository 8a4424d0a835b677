"""Every command refuses a bad value with exit 2 naming the option, before it starts anything; and
the environments are the tfvars files present: a new one works in every command without code."""

import argparse
import dataclasses
import shutil

import pytest

import harness.paths
from harness.cli import main, parser
from harness.cli.options import var_file
from harness.paths import environment_file, project

pytestmark = [pytest.mark.harness, pytest.mark.unit]

# Options whose value is free text by nature: a name, a title, an output path, a directory to write
# into, an id. Anything else must be checked when the command line is parsed.
FREE_TEXT = {
    "--master-host",
    "--master-bind-host",
    "--title",
    "--svg",
    "--reports-dir",
    "--timings",
    "--images",
    "series",
    "--keep-failing",
}
# What no value of each kind can be
BAD = {"number": ["abc", "-1"], "choice": ["no-such-choice"], "file": ["/nonexistent/file.tfvars"], "text": ["x"]}


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def valued_options():
    """(command, option, action) for every option of every command that takes a value."""
    for name, command in commands().items():
        for action in command._actions:
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            yield name, flag, action


def required(command: str, flag: str) -> list[str]:
    """The other required options of ``command``, with good values."""
    args = []
    for name, other, action in valued_options():
        if name == command and other != flag and action.required:
            args += [other, action.choices[0] if action.choices else "127.0.0.1:5557"]
    return args


def kind(action: argparse.Action) -> str:
    if action.choices:
        return "choice"
    name = getattr(action.type, "__name__", "")
    if action.type in (int, float):
        return "number"
    return "number" if "number" in name else "file" if name == "existing_file" else "text"  # text: "x" is bad


@pytest.mark.parametrize(
    "command, flag, action", [pytest.param(*v, id=f"{v[0]} {v[1]}") for v in valued_options() if v[1] not in FREE_TEXT]
)
def test_every_option_refuses_a_bad_value_with_exit_2_naming_it(command, flag, action, capsys):
    values = BAD[kind(action)]
    if kind(action) == "text" and action.type is None:
        pytest.fail(f"{command} {flag} takes any text: give it a type= that checks it, or list it in FREE_TEXT")
    for bad in values:
        argv = [command, *required(command, flag), *([flag, bad] if flag.startswith("--") else [bad])]
        with pytest.raises(SystemExit) as exited:
            code = main(argv)  # a setting resolved by the command itself returns 2 instead
            raise SystemExit(code)
        said = capsys.readouterr().err
        assert exited.value.code == 2, (argv, said)
        assert flag in said, (argv, said)


def test_a_new_environment_file_works_in_every_command_that_takes_one(tmp_path, monkeypatch):
    for env in harness.paths.environments():
        shutil.copy(environment_file(env), tmp_path / f"{env}.tfvars")
    shutil.copy(environment_file("staging"), tmp_path / "qa.tfvars")
    monkeypatch.setattr(harness.paths, "_configured", dataclasses.replace(project(), environments_dir=tmp_path))
    taking = [name for name, flag, _ in valued_options() if flag == "--env"]
    assert set(taking) >= {"timings", "simulate", "outage", "rehearse", "load"}
    for name in taking:
        args = commands()[name].parse_args(["--env", "qa", *required(name, "--env")])
        assert args.env == "qa"
        if hasattr(args, "var_file"):
            assert var_file(args) == tmp_path / "qa.tfvars"
    (tmp_path / "qa.tfvars").unlink()
    with pytest.raises(SystemExit):
        commands()["timings"].parse_args(["--env", "qa"])


def test_every_option_and_argument_of_every_command_has_its_help():
    missing = [
        f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
        for name, command in commands().items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == [], "give each a help= (what it is, its default)"
