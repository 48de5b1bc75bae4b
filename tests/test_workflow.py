"""The GitHub Actions workflows (they cannot run here). ``book.yml`` runs the README's test command on pull requests and
the main job plus a Pages deployment on main and weekly; ``release.yml``, on a tag ``v*``, checks the tag against
the version, builds the sdist and the wheel, runs the wheel test on that wheel and attaches both to the tag's GitHub
release (the package index optionally). Every command they call is a Makefile target."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "book.yml"


def _workflow(path: Path = WORKFLOW) -> dict:
    workflow = yaml.safe_load(path.read_text())
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


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    lines = (ROOT / "Makefile").read_text().split(f"\n{target}:", 1)[1].splitlines()[1:]
    return [line.strip() for line in lines[:next((i for i, line in enumerate(lines) if not line.startswith("\t")),
                                                  len(lines))]]


def test_every_make_command_of_the_workflows_is_a_makefile_target() -> None:
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    commands = [run for job in _workflow()["jobs"].values() for run in _runs(job)]
    commands += _runs(_workflow(WORKFLOWS / "release.yml")["jobs"]["dist"])  # the other jobs only move its files
    assert commands
    for command in commands:
        words = [word for word in command.split() if "=" not in word]  # TAG=... sets a variable
        assert words[0] == "make" and set(words[1:]) <= targets, f"{command!r}: targets are {sorted(targets)}"


def test_a_version_tag_builds_tests_and_attaches_the_release_files() -> None:
    release = _workflow(WORKFLOWS / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert _runs(jobs["dist"]) == ['make dist TAG="$GITHUB_REF_NAME"']
    recipe = _recipe("dist")
    assert recipe[0] == '$(PY) -m fgssl_lib.release --tag "$(TAG)"', "the tag is checked before anything is built"
    assert any("-m build" in line and "--outdir dist" in line for line in recipe)
    assert recipe[-1] == 'FGSSL_WHEEL="$$(ls dist/*.whl)" $(PY) -m pytest -q tests/test_wheel.py'
    (upload,) = [s for s in jobs["dist"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == "dist/"
    publish = jobs["github-release"]
    assert publish["needs"] == "dist" and publish["permissions"] == {"contents": "write"}
    (attach,) = _runs(publish)
    assert attach.startswith('gh release create "$GITHUB_REF_NAME" dist/*') and "--verify-tag" in attach
    pypi = jobs["pypi"]
    assert pypi["needs"] == "dist" and "vars." in pypi["if"], "publishing to the package index stays optional"
    assert pypi["permissions"] == {"id-token": "write"}
    assert any(s.get("uses", "").startswith("pypa/gh-action-pypi-publish") for s in pypi["steps"])


def test_the_readme_says_how_to_cut_a_release() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Cutting a release", 1)[1].split("\n#", 1)[0]
    for step in ("fgssl_lib/__init__.py", "python -m fgssl_lib.release", "git tag v", "git push origin v",
                 "release.yml"):
        assert step in section, f"the README's release steps name {step!r}"
