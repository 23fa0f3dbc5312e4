"""Server settings from the one table: flags, PHI3OV_* variables, ranges, and the README's flag table."""

from __future__ import annotations

from pathlib import Path

import pytest

from phi3ov.errors import BadOptions
from phi3ov.settings import ServerSettings, declared

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_help_and_every_flag_is_in_the_readme():
    rows = "\n".join(line for line in README.read_text().splitlines() if line.startswith("|"))
    for name, how in declared():
        assert how.help, name
        if how.flag is not None:
            assert f"{how.flag_name(name)} " in rows or f"{how.flag_name(name)}`" in rows, \
                f"{how.flag_name(name)} is not in the README's flag tables"


def test_flags_win_over_variables_and_variables_over_defaults(monkeypatch):
    for var in ("PHI3OV_MAX_NUM_SEQS", "PHI3OV_PORT", "PORT", "SPACE_ID", "PHI3OV_HOST", "PHI3OV_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert ServerSettings.from_env().max_num_seqs == 8
    monkeypatch.setenv("PHI3OV_MAX_NUM_SEQS", "3")
    monkeypatch.setenv("PORT", "9000")
    assert (ServerSettings.from_env().max_num_seqs, ServerSettings.from_env().port) == (3, 9000)
    assert ServerSettings.from_argv(["--max-num-seqs", "5"]).max_num_seqs == 5


def test_repeatable_and_parsed_flags(monkeypatch):
    monkeypatch.delenv("PHI3OV_OV_CONFIG", raising=False)
    settings = ServerSettings.from_argv(["--ov-config", "A=1", "--ov-config", "B=2", "--cors-origin",
                                         "https://a.example,http://localhost:3000", "--auth", "me:pw", "--open"])
    assert settings.ov_config == (("A", "1"), ("B", "2"))
    assert settings.cors_origins == ("https://a.example", "http://localhost:3000")
    assert settings.auth == ("me", "pw") and settings.inbrowser
    monkeypatch.setenv("PHI3OV_OV_CONFIG", "C=3,D=4")
    assert ServerSettings.from_env().ov_config == (("C", "3"), ("D", "4"))


def test_a_space_serves_phi3_on_all_interfaces_without_a_key(monkeypatch):
    for var in ("PHI3OV_MODEL", "PHI3OV_HOST", "PHI3OV_ALLOW_NO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/phi3ov")
    settings = ServerSettings.from_env()
    assert settings.model.startswith("OpenVINO/Phi-3") and settings.host == "0.0.0.0" and settings.allow_no_api_key
    monkeypatch.setenv("PHI3OV_ALLOW_NO_API_KEY", "0")
    assert not ServerSettings.from_env().allow_no_api_key


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-queue", "-1"], "--max-queue must be a whole number of at least 0, got -1."),
    (["--max-num-seqs", "0"], "--max-num-seqs must be a whole number of at least 1, got 0."),
    (["--context-length", "10"], "--context-length must be at least 64 tokens, got 10."),
    (["--request-timeout", "100000"], "--request-timeout must be between 0 and 86400 seconds, got 100000.0."),
    (["--max-body-mb", "0"], "--max-body-mb must be between 0 and 1024, got 0.0."),
])
def test_out_of_range_values_are_refused_with_the_flag_name(flags, message):
    with pytest.raises(BadOptions) as err:
        ServerSettings.from_argv(flags)
    assert str(err.value).startswith(message)


def test_a_bad_variable_is_refused_too(monkeypatch):
    monkeypatch.setenv("PHI3OV_ENGINE", "turbo")
    with pytest.raises(BadOptions, match="--engine must be one of batched, single"):
        ServerSettings.from_env()
