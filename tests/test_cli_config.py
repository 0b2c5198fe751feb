"""The `mirkit` group: version, help, and TOML config files as defaults for subcommands."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mirkit import __version__
from mirkit.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    assert __version__ in run("--version").output
    result = run("--help")
    assert result.exit_code == 0 and "synth" in result.output and "--config" in result.output


def test_config_supplies_defaults_and_flags_win(tmp_path):
    config = tmp_path / "mirkit.toml"
    config.write_text('[synth]\npreset = "tiny"\nseed = 7\naudio-seconds = 2.0\n')
    from_file = run("-q", "--config", str(config), "synth", "--out", str(tmp_path / "a"))
    assert from_file.exit_code == 0, from_file.output
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["world"]["preset"]["audio_seconds"] == 2.0

    flagged = run(
        "-q", "--config", str(config), "synth", "--seed", "8", "--out", str(tmp_path / "b")
    )
    assert flagged.exit_code == 0, flagged.output
    truth = json.loads((tmp_path / "b" / "truth.json").read_text())
    assert truth["seed"] == 8 and truth["world"]["preset"]["audio_seconds"] == 2.0


def test_unknown_key_is_rejected_by_name(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[synth]\nseeed = 3\n")
    result = run("--config", str(config), "synth", "--out", str(tmp_path / "x"))
    assert result.exit_code != 0
    assert "unknown key 'seeed' in [synth]" in result.output and "seed" in result.output
    assert not (tmp_path / "x").exists()


def test_unknown_section_and_bad_values_are_rejected(tmp_path):
    section = tmp_path / "section.toml"
    section.write_text("[synthh]\nseed = 3\n")
    result = run("--config", str(section), "synth", "--out", str(tmp_path / "x"))
    assert result.exit_code != 0 and "unknown section [synthh]" in result.output

    value = tmp_path / "value.toml"
    value.write_text('[synth]\npreset = "huge"\n')
    result = run("--config", str(value), "synth", "--out", str(tmp_path / "x"))
    assert result.exit_code != 0 and "preset = 'huge'" in result.output

    broken = tmp_path / "broken.toml"
    broken.write_text("[synth\n")
    result = run("--config", str(broken), "synth", "--out", str(tmp_path / "x"))
    assert result.exit_code != 0 and "not valid TOML" in result.output


def test_example_configs_are_valid():
    from pathlib import Path

    from mirkit.config import build_default_map, read_toml

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.toml")):
        assert build_default_map(main, read_toml(path), str(path))


def test_every_command_reports_a_fixable_problem_as_one_line_without_a_traceback(
    tiny_shards, tmp_path
):
    """One handler (the group's) turns any MirkitError into 'Error: ...' and exit 1,
    whichever command and module raised it; other exceptions keep their tracebacks."""
    cases = [
        (["eval", "--run", str(tmp_path)], str(tmp_path)),  # not a run
        (
            ["train", "--shards", str(tiny_shards), "--run", str(tmp_path / "r")]
            + ["--modalities", "id,smell"],
            "smell",
        ),
        (["train", "--shards", str(tmp_path), "--run", str(tmp_path / "r")], "manifest"),
        (["shards", "verify", str(tmp_path)], str(tmp_path)),
    ]
    for args, named in cases:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "Error:" in result.output and named in result.output, result.output
        assert "Traceback" not in result.output


def test_every_train_option_has_its_help_next_to_its_field():
    import dataclasses

    from mirkit_train.config import TrainConfig

    helps = {f.name: f.metadata.get("help") for f in dataclasses.fields(TrainConfig)}
    assert all(helps.values()), [name for name, text in helps.items() if not text]
    shown = " ".join(run("train", "--help").output.split())
    for name in ("history_dropout", "repeat_memory", "weight_decay"):
        assert " ".join(helps[name].split())[:40] in shown


def test_every_option_a_message_suggests_exists():
    """Messages name options to fix a problem ("set it with --play-user-col"): each one
    must be an option of some mirkit command (or of the other tool the message names)."""
    import re
    from pathlib import Path

    import click

    import mirkit
    import mirkit_train

    def options(command: click.Command) -> set[str]:
        found = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for sub in getattr(command, "commands", {}).values():
            found |= options(sub)
        return found

    known = options(main) | {"--standalone", "--extra", "--help"}  # torchrun's, uv's
    packages = [Path(mirkit.__file__).parent, Path(mirkit_train.__file__).parent]
    suggested = {
        (path.name, option)
        for package in packages
        for path in package.rglob("*.py")
        if "cli" not in path.parts
        for option in re.findall(r"(--[a-z][a-z0-9-]+)", path.read_text())
    }
    assert suggested and not {s for s in suggested if s[1] not in known}
