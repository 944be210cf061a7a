"""`pragma`'s command line: pragma_boot's argument style, JSON mode, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pcc import __version__
from pcc.common.errors import UserInputError
from pcc.site import cli


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_boot_takes_positionals_and_name_value_options() -> None:
    args, command, _ = cli.parse(["boot", "tiny", "2", "key=/k.pub", "mem=256:128", "cluster=r1"])
    assert command is not None and command.words == ("boot",)
    assert {k: args[k] for k in ("vc_name", "num_cpus", "key", "mem", "cluster")} == {
        "vc_name": "tiny",
        "num_cpus": "2",
        "key": "/k.pub",
        "mem": "256:128",
        "cluster": "r1",
    }


def test_positionals_may_be_given_as_name_value_in_any_order() -> None:
    args, _, _ = cli.parse(["boot", "num_cpus=0", "vc_name=tiny", "--json"])
    assert (args["vc_name"], args["num_cpus"], args["--json"]) == ("tiny", "0", "1")


def test_list_cluster_and_list_repository_are_distinct_commands() -> None:
    assert cli.parse(["list", "cluster", "r1"])[1].words == ("list", "cluster")  # type: ignore[union-attr]
    assert cli.parse(["list", "repository"])[1].words == ("list", "repository")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["boot", "tiny"], "missing NUM_CPUS"),
        (["boot", "tiny", "1", "color=red"], "unknown option 'color'"),
        (["boot", "tiny", "1", "2"], "too many arguments"),
        (["frobnicate"], "unknown command"),
        (["--bogus", "check"], "unknown flag"),
        (["boot", "tiny", "1", "loglevel=LOUD"], "loglevel must be"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        cli.parse(argv)


def test_json_errors_are_one_document_with_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("--json", "boot", "tiny", "1", "color=red")
    doc = json.loads(out)
    assert code == 2
    assert (
        doc["ok"] is False and doc["error"]["exit_code"] == 2 and "unknown option" in doc["error"]["message"]
    )
    assert capsys.readouterr().err.startswith("pragma: error:")


def test_a_missing_config_is_exit_3(tmp_path: Path) -> None:
    code, out = run("--json", "--config", str(tmp_path / "none.toml"), "check")
    assert code == 3
    assert "cannot read the site configuration" in json.loads(out)["error"]["message"]


def test_list_repository_in_json_from_the_shipped_repository(site_file: Path) -> None:
    code, out = run("--json", "--config", str(site_file), "list", "repository")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["command"] == "list repository"
    assert [i["name"] for i in doc["result"]] == ["tiny", "tiny-legacy"]
    assert doc["result"][0]["frontend"]["disks"][0]["format"] == "qcow2"


def test_boot_rejects_shell_metacharacters_in_names_before_doing_anything(site_file: Path) -> None:
    code, out = run("--json", "--config", str(site_file), "boot", "tiny", "0", "cluster=x;rm -rf /")
    assert code == 2 and "invalid cluster name" in json.loads(out)["error"]["message"]
    assert not (site_file.parent / "staging").exists()


def test_help_version_and_help_for_one_command() -> None:
    code, text = run("help")
    assert code == 0 and all(verb in text for verb in ("boot", "list cluster", "shutdown", "clean", "check"))
    assert run("--version") == (0, f"pragma {__version__}\n")
    code, text = run("help", "boot")
    assert code == 0 and text.startswith("  pragma boot VC_NAME NUM_CPUS")
