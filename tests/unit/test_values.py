"""Values crossing into HTCondor: ClassAd expressions and the job-side attribute syntax."""

from __future__ import annotations

import classad2
import htcondor2
import pytest

from pcc.common.errors import UserInputError
from pcc.condor.adapter import JobStatus, Universe, to_expr
from pcc.jobs.main import parse_assignments


@pytest.mark.parametrize(
    ("value", "expr"),
    [
        ("running", '"running"'),
        ('say "hi"', '"say \\"hi\\""'),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_python_values_become_classad_expressions(value: object, expr: str) -> None:
    assert to_expr(value) == expr


def test_an_expression_tree_passes_through() -> None:
    assert to_expr(classad2.ExprTree("time() + 60")) == "time() + 60"


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError):
        to_expr([1, 2])


def test_job_assignments_keep_integers_and_booleans_and_quote_the_rest() -> None:
    assert parse_assignments(["PccNodesUp=2", "PccOk=true", "PccState=running", "PccMessage=a b=c"]) == {
        "PccNodesUp": "2",
        "PccOk": "true",
        "PccState": '"running"',
        "PccMessage": '"a b=c"',
    }


@pytest.mark.parametrize("bad", ["JobStatus=4", "PccState", "Pcc State=x", "=x", "Requirements=true"])
def test_job_assignments_only_accept_pcc_attributes(bad: str) -> None:
    with pytest.raises(UserInputError):
        parse_assignments([bad])


def test_job_status_is_the_bindings_enum_and_equals_the_integers_queries_return() -> None:
    assert JobStatus is htcondor2.JobStatus
    ad = {"JobStatus": 5}  # what CondorAdapter.query gives: plain Python values
    assert ad["JobStatus"] == JobStatus.HELD
    assert ad["JobStatus"] != JobStatus.RUNNING
    assert f"JobStatus == {JobStatus.HELD}" == "JobStatus == 5"
    assert JobStatus(4) is JobStatus.COMPLETED


def test_universes_are_named_with_htcondors_numbers() -> None:
    assert (Universe.VANILLA, Universe.SCHEDULER, Universe.LOCAL) == (5, 7, 12)
    assert f"JobUniverse == {Universe.SCHEDULER}" == "JobUniverse == 7"
