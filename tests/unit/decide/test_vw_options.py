"""The options a decision point may give Vowpal Wabbit: an allowlist.

VW has options that write files (``-f``, ``--invert_hash``, ``--extra_metrics``), read them
(``-i``, ``-d``, ``--dictionary``, a bare file name), connect to a server
(``--span_server``) or print and stop (``--help``). A client with ``decide:admin`` must not
reach any of them, in any spelling VW reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auie.decide.policies import make_policy
from auie.decide.policies import vw as vw_policy
from auie.errors import InvalidRequest


def _refused(args: str) -> str:
    with pytest.raises(InvalidRequest) as caught:
        make_policy({"type": "vw", "args": args}, context_dim=4)
    assert caught.value.code == "invalid_policy"
    return caught.value.message


@pytest.mark.parametrize(
    ("spelling", "named"),
    [
        ("-f{path}", "-f"),  # a short option with its value attached
        ("-f {path}", "-f"),
        ("--final_regressor={path}", "--final_regressor"),
        ("--invert_hash {path}", "--invert_hash"),
        ("--readable_model {path}", "--readable_model"),
        ("--extra_metrics {path}", "--extra_metrics"),
        ("-p{path}", "-p"),
        ("--cache_file {path}", "--cache_file"),
        ("--dictionary s:{path}", "--dictionary"),
        ("--span_server 127.0.0.1", "--span_server"),
        ("--help", "--help"),
        ("--version", "--version"),
        ("-a", "-a"),
        ("--random_seed 5", "--random_seed"),
        ("--final_reg {path}", "--final_reg"),  # an abbreviation
    ],
)
def test_options_outside_the_allowlist_are_refused_and_write_nothing(
    tmp_path: Path, spelling: str, named: str
) -> None:
    target = tmp_path / "written"
    message = _refused("--cb_explore_adf " + spelling.format(path=target))
    assert f"not allowed: {named}" in message
    assert "--epsilon" in message  # the allowed ones are named
    assert not target.exists()


def test_a_value_that_follows_no_option_is_refused(tmp_path: Path) -> None:
    """VW reads a bare word as a data file to open."""
    data = tmp_path / "data.txt"
    data.write_text("1 | a\n")
    message = _refused(f"--cb_explore_adf {data}")
    assert "follows no option that takes a value" in message
    assert "'extra' follows no option" in _refused("--cb_explore_adf --epsilon 0.1 extra")
    assert "--squarecb takes no value" in _refused("--cb_explore_adf --squarecb=1")


#: Options that VW takes only together with others.
_WITH = {
    "gamma_scale": "--squarecb",
    "gamma_exponent": "--squarecb",
    "elim": "--squarecb",
    "mellowness": "--squarecb --elim",
    "psi": "--cover 2",
    "nounif": "--cover 2",
    "rnd_alpha": "--rnd 2",
    "rnd_invlambda": "--rnd 2",
    "synthcoverpsi": "--synthcover",
    "synthcoversize": "--synthcover",
    "greedify": "--bag 2",
    "lambda": "--softmax",
    "ftrl_alpha": "--ftrl",
    "ftrl_beta": "--ftrl",
    "quantile_tau": "--loss_function quantile",
    "skips": "--ngram 2",
}
_VALUES = {
    "cb_type": "mtr",
    "loss_function": "squared",
    "link": "identity",
    "hash": "strings",
    "quadratic": "sa",
    "cubic": "sas",
    "interactions": "sa",
    "keep": "s",
    "ignore": "x",
    "ignore_linear": "x",
    "bit_precision": "18",
    "ngram": "2",
    "first": "2",
    "bag": "2",
    "cover": "2",
    "rnd": "2",
    "synthcoversize": "2",
    "lambda": "-1",
    "min_prediction": "-1",
    "hash_seed": "7",
}


@pytest.mark.parametrize("name", sorted(vw_policy._OPTIONS))
def test_every_allowed_option_is_one_vw_takes_and_decides_with(name: str) -> None:
    """The allowlist names options of the installed VW (a release that renames one fails
    here), in each spelling the policy accepts."""
    takes_value = vw_policy._OPTIONS[name]
    value = f" {_VALUES.get(name, '0.1')}" if takes_value else ""
    args = f"--cb_explore_adf {_WITH.get(name, '')} --{name}{value}"
    policy = make_policy({"type": "vw", "args": args}, context_dim=4)
    assert policy.params() == {"args": args}


@pytest.mark.parametrize(
    "args",
    [
        "--cb_explore_adf -qsa -b18 -l0.5",
        "--cb_explore_adf -q :: -l 0.01 -b 20",
        "--cb_explore_adf --min_prediction -1 --epsilon=0.3",  # a negative value
    ],
)
def test_short_spellings_attached_and_negative_values_are_taken(args: str) -> None:
    assert make_policy({"type": "vw", "args": args}, context_dim=4).params() == {"args": args}


@pytest.mark.parametrize("spelling", ["-b +25", "-b+25", "--bit_precision=+25", "-b ' 25'"])
def test_the_bit_bound_has_no_other_spelling(spelling: str) -> None:
    """VW reads "+25" and " 25" as 25: 2^25 weights past the bound (2^31: tens of GB)."""
    assert "takes a number of bits" in _refused("--cb_explore_adf " + spelling)


@pytest.mark.parametrize(
    "args", ["--cb_explore_adf -q sa sb", "--cb_explore_adf --interactions sa sb --epsilon 0.1"]
)
def test_options_that_take_several_words_take_them(args: str) -> None:
    assert make_policy({"type": "vw", "args": args}, context_dim=4).params() == {"args": args}
