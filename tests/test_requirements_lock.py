"""requirements.txt (what a buildpack installs) agrees with pyproject.toml (what pip install . installs).

Regenerate with `python tools/lock_requirements.py` when these fail."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.requirements_lock import FROM_PYPROJECT, read_lock

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "requirements.txt is out of date: run `python tools/lock_requirements.py`"


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_its_range():
    pins, _, _ = read_lock()
    for dependency in runtime_dependencies():
        name = canonicalize_name(dependency.name)
        assert name in pins, f"pyproject.toml needs {dependency} but requirements.txt has no pin for it; {REGENERATE}"
        assert dependency.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, outside pyproject.toml's {dependency}; {REGENERATE}"
        )


def test_pins_are_exactly_what_pyproject_needs():
    """No pin stays behind for a dependency pyproject.toml dropped (or moved to an extra)."""
    pins, via, _ = read_lock()
    roots = {canonicalize_name(dependency.name) for dependency in runtime_dependencies()}
    pinned_as_roots = {name for name, needers in via.items() if FROM_PYPROJECT in needers}
    assert pinned_as_roots == roots, (
        f"pinned for pyproject.toml but not in it: {sorted(pinned_as_roots - roots)}, "
        f"in it but not pinned for it: {sorted(roots - pinned_as_roots)}; {REGENERATE}"
    )
    for name in pins:
        assert via.get(name), f"requirements.txt: {name} has no `# via` line; {REGENERATE}"
        unknown = via[name] - set(pins) - {FROM_PYPROJECT}
        assert not unknown, f"requirements.txt: {name} is needed by {sorted(unknown)}, which are not pinned; {REGENERATE}"
    reachable, frontier = set(), set(roots)
    while frontier:
        reachable |= frontier
        frontier = {name for name, needers in via.items() if needers & reachable} - reachable
    assert set(pins) == reachable, f"pins nothing in pyproject.toml needs: {sorted(set(pins) - reachable)}; {REGENERATE}"


def test_the_project_itself_is_installed_last_and_not_editable():
    """A buildpack runs `pip install -r requirements.txt` only: the final `.` installs davpush (and its
    `davpush` command) held to the pins; an editable install would point into the build directory."""
    _, _, others = read_lock()
    assert others == ["."]


def test_lock_is_for_the_python_of_python_version():
    version = (ROOT / ".python-version").read_text().strip()
    assert f"resolved for CPython {version} " in (ROOT / "requirements.txt").read_text()
    python_range = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(python_range).contains(version + ".0")
