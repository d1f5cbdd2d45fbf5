"""What a fresh machine has, for the checks that keep the tests passing on one.

A fresh machine has the checkout, the virtualenvs the Makefile builds in it, the Pythons the
README asks for and those the virtualenvs were built from, the base system in /usr/bin and /bin, and the temporary files the tests make.
A test that starts anything else (nginx in /usr/sbin, a tool installed by hand in /usr/local)
passes only where someone installed it: tests/conftest.py refuses to start it.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
BASE_SYSTEM = (Path("/usr/bin"), Path("/bin"))
REQUIRED_PYTHONS = ("python3.11", "python3.12", "python3.13")


def _python_homes() -> set:
    """The bin directories of the Pythons the README asks for (pyenv's shims among them) and of
    those the checkout's virtualenvs were made from."""
    homes = {Path(sys.base_prefix) / "bin"}
    for name in REQUIRED_PYTHONS:
        found = shutil.which(name)
        if found:
            homes.add(Path(found).parent)
    for config in REPO.glob(".venv*/pyvenv.cfg"):
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                homes.add(Path(value.strip()))
    return homes


def allowed_places() -> tuple:
    places = {REPO, Path(tempfile.gettempdir()), *BASE_SYSTEM, *_python_homes()}
    # A virtualenv may be a symlink to one built elsewhere; its programs are still the checkout's.
    places.update(venv.resolve() for venv in REPO.glob(".venv*"))
    return tuple(places)


def is_on_a_fresh_machine(program: Path, places: tuple) -> bool:
    candidates = (Path(os.path.abspath(program)), program.resolve())
    return any(candidate.is_relative_to(place) for candidate in candidates for place in places)


def program_of(executable, args, cwd, env) -> Optional[Path]:
    """The file subprocess.Popen is about to run (None: not found, Popen will say so).

    The arguments are those of the "subprocess.Popen" audit event, where on POSIX `executable`
    is always set (args[0], or /bin/sh with shell=True)."""
    executable = os.fsdecode(executable)
    if os.sep not in executable:
        search_path = (env if env is not None else os.environ).get("PATH", os.defpath)
        found = shutil.which(executable, path=os.fsdecode(search_path))
        return Path(found) if found else None
    return Path(os.path.join(os.fsdecode(cwd or os.getcwd()), executable))


def refuse_programs_a_fresh_machine_lacks(places: tuple):
    """An audit hook (sys.addaudithook) that fails any subprocess outside `places`."""

    def hook(event, details):
        if event != "subprocess.Popen":
            return
        program = program_of(*details)
        if program is not None and not is_on_a_fresh_machine(program, places):
            raise RuntimeError(
                f"a test started {program}, which a fresh machine does not have: only the "
                "checkout's virtualenvs, their Pythons and /usr/bin, /bin are there "
                "(tests/fresh_machine.py)"
            )

    return hook
