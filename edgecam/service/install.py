"""Install/uninstall the systemd unit and example config as a list of printable steps.

Planning is separate from doing, so `--dry-run` prints exactly the steps a real run would take.
`root` works like DESTDIR: files land under it, while the unit's contents keep the final
paths (tests install into a temp dir). systemctl runs only for root "/" with systemd as PID 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecam import dirs
from edgecam.errors import EdgecamError, UsageError

UNIT_NAME = "edgecam.service"
CONFIG_NAME = "edgecam.toml"
DEFAULT_EXEC = Path("/opt/edgecam/venv/bin/edgecam")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
#: Directories the shipped unit hides from the service, and the setting that hides them.
_HIDDEN_FROM_SERVICE = {
    Path("/tmp"): "PrivateTmp=yes gives the service its own empty /tmp",
    Path("/var/tmp"): "PrivateTmp=yes gives the service its own empty /var/tmp",
    Path("/home"): "ProtectHome=yes hides it",
    Path("/root"): "ProtectHome=yes hides it",
    Path("/run/user"): "ProtectHome=yes hides it",
}


@dataclass(frozen=True)
class Step:
    """One printed action; `action` is None when there is nothing to do (already in place)."""

    description: str
    action: Callable[[], None] | None = None


@dataclass(frozen=True)
class Layout:
    """Where things go, under `root`."""

    root: Path

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system" / UNIT_NAME

    @property
    def config_dir(self) -> Path:
        return self.root / "etc/edgecam"

    @property
    def config(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / "var/lib/edgecam"

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"


def data_dir() -> Path:
    """The shipped unit + example config (package data in a wheel, `systemd/` in a checkout)."""
    found = dirs.shipped("systemd", "systemd")
    if (found / UNIT_NAME).is_file() and (found / CONFIG_NAME).is_file():
        return found
    raise EdgecamError(
        f"cannot find {UNIT_NAME} and {CONFIG_NAME} in {found}",
        "reinstall edgecam (the wheel ships them as package data)",
    )


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 (not true in containers and CI)."""
    return Path("/run/systemd/system").is_dir()


def current_executable() -> Path | None:
    """The `edgecam` console script of the running interpreter's environment, if any."""
    candidate = Path(sys.executable).parent / "edgecam"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def unit_word(path: Path) -> str:
    """`path` as the executable word of ExecStart=: `%` specifiers escaped, and
    double-quoted when it holds a space (unquoted, `/opt/my venv/bin/edgecam` would be two
    words). Quotes and backslashes never get here: systemd refuses them in an executable
    name ("contains special characters"), so check_executable does too."""
    text = str(path).replace("%", "%%")
    return f'"{text}"' if " " in text else text


def render_unit(template: str, *, executable: Path | None, user: str | None) -> str:
    """The unit with ExecStart pointing at `executable` and an optional fixed User=."""
    text = template
    if executable is not None:
        word = unit_word(executable)
        text = re.sub(r"^ExecStart=\S+", lambda _m: f"ExecStart={word}", text, count=1, flags=re.M)
    if user is not None:
        if not _USER_NAME.match(user):
            raise UsageError(f"--user {user!r}: not a valid user name (e.g. edgecam)")
        text = re.sub(r"^DynamicUser=yes$", f"DynamicUser=yes\nUser={user}", text, flags=re.M)
    return text


def with_documentation(unit: str, url: str | None) -> str:
    """The unit with ``Documentation=<project URL>#run-on-boot`` after ``Description=``: the
    URL is kept in one place (pyproject.toml), so the shipped unit does not repeat it."""
    if not url or re.search(r"^Documentation=", unit, flags=re.M):
        return unit
    line = f"Documentation={url}#run-on-boot"
    return re.sub(r"^(Description=.*)$", lambda m: f"{m[1]}\n{line}", unit, count=1, flags=re.M)


def exec_warnings(executable: Path) -> list[str]:
    if executable.is_relative_to("/home") or executable.is_relative_to("/root"):
        return [
            f"{executable} is under /home or /root, which the unit hides (ProtectHome=yes): "
            f"install edgecam in a venv at {DEFAULT_EXEC.parent.parent}"
        ]
    return []


def check_executable(executable: Path, *, root: Path) -> None:
    """UsageError unless the unit can run `executable`: an absolute path (the unit has no
    working directory of the caller's), plain text (a newline would add lines to the unit),
    outside what the unit hides from the service, and - when installing into the real / -
    an executable file. Symlinks are followed for the hiding check. Spaces are fine:
    render_unit quotes them."""
    shown = repr(str(executable))
    if not executable.is_absolute():
        raise UsageError(
            f"ExecStart {shown}: a relative path; give the absolute path, e.g. {DEFAULT_EXEC}"
        )
    text = str(executable)
    if not text.isprintable():  # newlines, escapes; undecodable bytes arrive as surrogates
        raise UsageError(f"ExecStart {shown}: control characters or bytes that are not UTF-8")
    if any(c in text for c in "\"'\\"):
        raise UsageError(
            f"ExecStart {shown}: systemd refuses quotes and backslashes in an executable name"
        )
    for candidate in dict.fromkeys([executable, executable.resolve()]):
        for hidden, why in _HIDDEN_FROM_SERVICE.items():
            if candidate.is_relative_to(hidden):
                raise UsageError(
                    f"ExecStart {candidate} is under {hidden}, which the service cannot see "
                    f"({why})",
                    f"install edgecam in a venv at {DEFAULT_EXEC.parent.parent}",
                )
    if root == Path("/") and not (executable.is_file() and os.access(executable, os.X_OK)):
        raise UsageError(f"ExecStart {shown}: no executable file there")


def _write(path: Path, text: str, mode: int) -> Callable[[], None]:
    def action() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(mode)
        tmp.replace(path)

    return action


def _mkdir(path: Path, mode: int) -> Callable[[], None]:
    return lambda: path.mkdir(mode=mode, parents=True, exist_ok=True)


def _systemctl(*args: str) -> Step:
    def action() -> None:
        done = subprocess.run(["systemctl", *args], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise EdgecamError(
                f"systemctl {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )

    return Step(f"run systemctl {' '.join(args)}", action)


def plan_install(
    layout: Layout,
    *,
    executable: Path | None,
    user: str | None = None,
    systemd: bool = False,
    check_config: Callable[[Path], None] | None = None,
) -> list[Step]:
    """Unit (updated if different), example config (never over an existing one), state dir,
    config check, then daemon-reload + enable --now when `systemd`."""
    source = data_dir()
    unit = render_unit(
        (source / UNIT_NAME).read_text(encoding="utf-8"), executable=executable, user=user
    )
    unit = with_documentation(unit, dirs.project_url())
    steps = []
    if layout.unit.is_file() and layout.unit.read_text(encoding="utf-8") == unit:
        steps.append(Step(f"unit {layout.unit} is up to date"))
    else:
        verb = "update" if layout.unit.exists() else "install"
        steps.append(Step(f"{verb} unit {layout.unit}", _write(layout.unit, unit, 0o644)))
    if layout.config.exists():
        steps.append(Step(f"keep existing config {layout.config} (not overwritten)"))
    else:
        example = (source / CONFIG_NAME).read_text(encoding="utf-8")
        steps.append(
            Step(f"install example config {layout.config}", _write(layout.config, example, 0o644))
        )
    for path in (layout.state_dir, layout.models_dir):
        if path.is_dir():
            steps.append(Step(f"state directory {path} exists"))
        else:
            steps.append(Step(f"create state directory {path}", _mkdir(path, 0o755)))
    if check_config is not None:
        config = layout.config
        steps.append(Step(f"check config {config}", lambda: check_config(config)))
    if systemd:
        steps += [_systemctl("daemon-reload"), _systemctl("enable", "--now", UNIT_NAME)]
    else:
        steps.append(Step("systemd is not running here: skip daemon-reload and enable --now"))
    return steps


def plan_uninstall(layout: Layout, *, purge: bool = False, systemd: bool = False) -> list[Step]:
    """Stop and disable, remove the unit; config and state stay unless `purge`."""
    steps = []
    if systemd and layout.unit.exists():
        steps.append(_systemctl("disable", "--now", UNIT_NAME))
    if layout.unit.exists():
        steps.append(Step(f"remove unit {layout.unit}", layout.unit.unlink))
    else:
        steps.append(Step(f"unit {layout.unit} is not installed"))
    if systemd:
        steps.append(_systemctl("daemon-reload"))
    private = layout.root / "var/lib/private/edgecam"  # where DynamicUser= keeps the state
    cache = layout.root / "var/cache/edgecam"
    for path in (layout.config_dir, layout.state_dir, private, cache):
        if not (path.exists() or path.is_symlink()):
            continue
        if purge:
            steps.append(Step(f"remove {path}", _remove(path)))
        else:
            steps.append(Step(f"keep {path} (remove with --purge)"))
    return steps


def _remove(path: Path) -> Callable[[], None]:
    def action() -> None:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)

    return action


def execute(steps: list[Step], *, dry_run: bool, echo: Callable[[str], None]) -> None:
    """Print each step (prefixed 'would' on a dry run) and do it; stops at the first error."""
    for step in steps:
        if step.action is None:
            echo(f"  {step.description}")
        elif dry_run:
            echo(f"would {step.description}")
        else:
            echo(step.description)
            step.action()
