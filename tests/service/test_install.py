"""`edgecam service install|uninstall` into a temporary root (like DESTDIR): files, modes, no
overwriting of an existing config, idempotence, dry runs that change nothing."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from edgecam.cli import main
from edgecam.commands.service import require_root
from edgecam.errors import UsageError
from edgecam.service.install import (
    DEFAULT_EXEC,
    Layout,
    check_executable,
    data_dir,
    plan_install,
    plan_uninstall,
    render_unit,
)
from tests.support.paths import REPO

TRUE = Path("/usr/bin/true")


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def install(root: Path, *extra: str) -> int:
    return main(["service", "install", "--prefix", str(root), "--edgecam", str(TRUE), *extra])


def test_install_places_unit_config_and_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(tmp_path) == 0
    out = capsys.readouterr().out
    layout = Layout(tmp_path)
    unit = layout.unit.read_text()
    assert f"ExecStart={TRUE} run --config /etc/edgecam/edgecam.toml" in unit
    assert layout.config.read_text() == (REPO / "systemd" / "edgecam.toml").read_text()
    assert stat.S_IMODE(layout.unit.stat().st_mode) == 0o644
    assert layout.models_dir.is_dir()
    for line in (
        f"install unit {layout.unit}",
        f"install example config {layout.config}",
        f"create state directory {layout.state_dir}",
        f"check config {layout.config}",
        "systemd is not running here: skip daemon-reload and enable --now",
    ):
        assert line in out


def test_existing_config_is_never_overwritten_and_rerun_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path)
    layout.config_dir.mkdir(parents=True)
    layout.config.write_text("[mqtt]\nhost = 'mine'\n")
    assert install(tmp_path) == 0
    assert layout.config.read_text() == "[mqtt]\nhost = 'mine'\n"
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert install(tmp_path) == 0
    out = capsys.readouterr().out
    assert f"keep existing config {layout.config} (not overwritten)" in out
    assert f"unit {layout.unit} is up to date" in out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_an_invalid_existing_config_stops_before_enabling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path)
    layout.config_dir.mkdir(parents=True)
    layout.config.write_text("[mqtt]\nport = 99999\n")
    assert install(tmp_path) == 2
    captured = capsys.readouterr()
    assert "mqtt.port: 99999 is not a valid port" in captured.err
    assert "systemd is not running" not in captured.out  # nothing after the failed check


def test_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(tmp_path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert tree(tmp_path) == set()
    assert f"would install unit {Layout(tmp_path).unit}" in out
    assert f"would install example config {Layout(tmp_path).config}" in out


def test_user_option_pins_the_account(tmp_path: Path) -> None:
    assert install(tmp_path, "--user", "camera") == 0
    unit = Layout(tmp_path).unit.read_text()
    assert "DynamicUser=yes\nUser=camera\n" in unit


def test_bad_user_name_is_a_usage_error(tmp_path: Path) -> None:
    assert install(tmp_path, "--user", "Bad Name") == 2
    assert not Layout(tmp_path).unit.exists()


def test_uninstall_keeps_config_and_state_unless_purged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path)
    assert install(tmp_path) == 0
    (layout.models_dir / "model.tflite").write_bytes(b"x")
    assert main(["service", "uninstall", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not layout.unit.exists()
    assert layout.config.exists()
    assert (layout.models_dir / "model.tflite").exists()
    assert f"keep {layout.config_dir} (remove with --purge)" in out
    assert main(["service", "uninstall", "--prefix", str(tmp_path), "--purge", "--dry-run"]) == 0
    assert layout.config.exists()
    assert main(["service", "uninstall", "--prefix", str(tmp_path), "--purge"]) == 0
    assert not layout.config_dir.exists()
    assert not layout.state_dir.exists()


@pytest.mark.parametrize(
    ("root", "dry_run", "euid", "refused"),
    [
        # a normal user installing for real: refused with the sudo hint
        ("/", False, 1000, True),
        # root installing for real
        ("/", False, 0, False),
        # anyone may look at the plan
        ("/", True, 1000, False),
        # staging into a prefix (packaging, tests) needs no root
        ("/tmp/stage", False, 1000, False),
    ],
)
def test_real_root_needs_root_privileges(
    root: str, dry_run: bool, euid: int, refused: bool
) -> None:
    if refused:
        with pytest.raises(UsageError, match="run it as root"):
            require_root(Path(root), dry_run=dry_run, euid=euid, action="install")
    else:
        require_root(Path(root), dry_run=dry_run, euid=euid, action="install")


def test_plans_do_not_run_systemctl_without_systemd(tmp_path: Path) -> None:
    steps = plan_install(Layout(tmp_path), executable=TRUE, systemd=False)
    assert not any("systemctl" in s.description for s in steps)
    steps = plan_install(Layout(tmp_path), executable=TRUE, systemd=True)
    assert [s.description for s in steps[-2:]] == [
        "run systemctl daemon-reload",
        "run systemctl enable --now edgecam.service",
    ]
    Layout(tmp_path).unit.parent.mkdir(parents=True)
    Layout(tmp_path).unit.write_text("x")
    steps = plan_uninstall(Layout(tmp_path), systemd=True)
    assert steps[0].description == "run systemctl disable --now edgecam.service"


def test_render_unit_rewrites_only_the_executable() -> None:
    template = (data_dir() / "edgecam.service").read_text()
    unit = render_unit(template, executable=Path("/srv/venv/bin/edgecam"), user=None)
    assert "ExecStart=/srv/venv/bin/edgecam run --config /etc/edgecam/edgecam.toml" in unit
    assert unit.replace("/srv/venv/bin/edgecam", str(DEFAULT_EXEC)) == template
    assert render_unit(template, executable=None, user=None) == template
    with pytest.raises(UsageError):
        render_unit(template, executable=None, user="root;rm")


@pytest.mark.parametrize(
    ("executable", "problem"),
    [
        # hidden from the service by the unit's own sandbox: it would fail at every start
        ("/tmp/venv/bin/edgecam", "under /tmp, which the service cannot see (PrivateTmp=yes"),
        ("/var/tmp/v/bin/edgecam", "under /var/tmp"),
        ("/home/pi/venv/bin/edgecam", "under /home, which the service cannot see (ProtectHome"),
        ("/root/venv/bin/edgecam", "under /root"),
        # the unit does not run in the caller's directory
        ("venv/bin/edgecam", "a relative path; give the absolute path"),
        # a newline would add lines (ExecStartPre=...) to the unit
        ("/opt/x\nExecStartPre=/bin/evil", "control characters"),
        ("/opt/\udcff/bin/edgecam", "not UTF-8"),  # an undecodable byte from argv
        ('/opt/"q"/bin/edgecam', "quotes and backslashes"),
    ],
)
def test_executables_the_service_cannot_run_are_refused(executable: str, problem: str) -> None:
    with pytest.raises(UsageError, match=re.escape(problem)):
        check_executable(Path(executable), root=Path("/stage"))


def test_hidden_executable_refused_through_the_cli_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["service", "install", "--prefix", str(tmp_path), "--edgecam", "/tmp/v/edgecam"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PrivateTmp=yes" in err
    assert not Layout(tmp_path).unit.exists()


def test_installing_into_the_real_root_needs_the_executable_to_exist() -> None:
    with pytest.raises(UsageError, match="no executable file there"):
        check_executable(Path("/opt/no-such-venv/bin/edgecam"), root=Path("/"))
    check_executable(TRUE, root=Path("/"))
    check_executable(DEFAULT_EXEC, root=Path("/stage"))  # packaging: need not exist here


def test_data_dir_is_the_source_tree_here() -> None:
    assert data_dir() == REPO / "systemd"
