"""The GitHub Actions workflow (it cannot run here): it parses, runs the README's test command on pull requests and
the main job plus a Pages deployment on main and weekly, and every command it calls is a Makefile target."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def _runs(job: dict) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_triggers_pull_requests_main_and_a_weekly_schedule() -> None:
    on = _workflow()["on"]
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    (schedule,) = on["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert day == month == "*" and weekday != "*", "weekly"


def test_pull_requests_run_the_readme_test_command_and_main_builds_and_deploys_the_book() -> None:
    jobs = _workflow()["jobs"]
    readme = (ROOT / "README.md").read_text()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set", "cd"))]
    assert _runs(jobs["test"]) == ci == ["make test"] and "\nmake test\n" in readme
    assert "pull_request" in jobs["test"]["if"]
    assert _runs(jobs["book"]) == ["make book"] and "\nmake book\n" in readme
    upload = [s for s in jobs["book"]["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    deploy = jobs["deploy"]
    assert deploy["needs"] == "book" and deploy["permissions"]["pages"] == "write"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy["steps"])


def test_every_make_command_of_the_workflow_is_a_makefile_target() -> None:
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    commands = [run for job in _workflow()["jobs"].values() for run in _runs(job)]
    assert commands
    for command in commands:
        words = command.split()
        assert words[0] == "make" and set(words[1:]) <= targets, f"{command!r}: targets are {sorted(targets)}"
