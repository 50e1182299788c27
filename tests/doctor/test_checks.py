"""`edgecam doctor` checks (edgecam.doctor.checks, edgecam.doctor.devices): facts in, verdict out.

Inputs are real: this machine's /etc/os-release and /proc/cpuinfo (expectations derived from
the host, so the suite passes on any Linux x86_64 or aarch64), /proc/cpuinfo text of
Raspberry Pi 4 / Pi 5 / 32-bit Pi boards (the Features lines their kernels print), directory
trees laid out like / for the systemd check, and a real mosquitto on a loopback port with a
password file for the MQTT check (reachable, wrong password, nothing listening).
"""

from __future__ import annotations

import grp
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecam.config.mqtt import MqttSection
from edgecam.doctor.checks import (
    Check,
    check_cpu,
    check_invoke,
    check_platform,
    check_runtimes,
    check_state_dir,
    check_systemd,
    check_xnnpack,
    platform_facts,
    read_os_release,
    render,
    working_path,
)
from edgecam.doctor.devices import (
    camera_need,
    check_mqtt,
    check_picamera2,
    check_source,
    check_v4l2,
    check_video_group,
)
from edgecam.runtime.select import Attempt

PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
"""
PI5 = (
    "processor\t: 0\nBogoMIPS\t: 108.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
    "lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n"
)
PI3_32BIT = """processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
"""


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma
"""


# ---- platform and CPU ---------------------------------------------------------------------


def test_os_release_of_this_machine_and_quoting(tmp_path: Path) -> None:
    # Whatever Linux this runs on: compare with the standard library's own parser.
    expected = platform.freedesktop_os_release()
    here = read_os_release()
    assert here["ID"] == expected["ID"] and here["PRETTY_NAME"] == expected["PRETTY_NAME"]
    release = tmp_path / "os-release"
    release.write_text('# comment\nPRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\n')
    assert read_os_release(release) == {
        "PRETTY_NAME": "Raspbian GNU/Linux 12 (bookworm)",
        "ID": "raspbian",
    }
    assert read_os_release(tmp_path / "missing") == {}


def test_platform_of_this_machine_is_described() -> None:
    facts = platform_facts()
    check = check_platform(facts, read_os_release(), None)
    assert facts["machine"] == platform.machine() and facts["python"] == platform.python_version()
    assert facts["machine"] in check.detail and f"Python {facts['python']}" in check.detail
    assert check.data["libc"] == (platform.libc_ver()[0] or check.data["libc"])
    # This test suite runs, so a TFLite runtime works here: never a failure.
    assert check.status in ("ok", "warn")


@pytest.mark.parametrize(
    ("machine", "glibc", "status", "words"),
    [
        ("aarch64", "2.36", "ok", "aarch64"),  # Bookworm
        ("aarch64", "2.31", "warn", "glibc older than 2.34"),  # Bullseye: no tflite-runtime
        ("armv6l", "2.36", "fail", "no TFLite runtime"),  # Pi Zero / Pi 1
    ],
)
def test_platform_flags_old_glibc_and_armv6(
    machine: str, glibc: str, status: str, words: str
) -> None:
    facts = {"machine": machine, "python": "3.11.2", "libc": "glibc", "libc_version": glibc}
    check = check_platform(facts, {"PRETTY_NAME": "Debian"}, "Raspberry Pi 4 Model B Rev 1.4")
    assert check.status == status and words in check.detail
    assert check.detail.startswith("Raspberry Pi 4 Model B")


def test_cpu_features_of_this_machine_match_its_cpuinfo() -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    check = check_cpu(platform.machine(), cpuinfo)
    assert check.status in ("ok", "warn") and check.data["emulated"] is False
    words = {
        w
        for line in cpuinfo.splitlines()
        if line.startswith(("flags", "Features"))
        for w in line.split(":", 1)[1].split()
    }
    if platform.machine() == "x86_64":
        assert check.data["features"]["avx2"] == ("avx2" in words)
    elif platform.machine() == "aarch64":
        assert check.data["features"]["neon"] == ("asimd" in words)
        assert check.data["features"]["lse"] == ("atomics" in words)


def test_cpu_pi4_has_neither_lse_nor_dotprod() -> None:
    check = check_cpu("aarch64", PI4)
    assert check.data["features"]["neon"] is True
    assert check.data["features"]["lse"] is False and check.data["features"]["dotprod"] is False
    assert "SIGILL" in check.detail and check.status == "ok"


def test_cpu_pi5_has_lse_and_dotprod() -> None:
    check = check_cpu("aarch64", PI5)
    assert check.status == "ok"
    assert check.data["features"] == {
        "neon": True,
        "dotprod": True,
        "lse": True,
        "fp16": True,
        "i8mm": False,
        "sve": False,
    }


def test_cpu_32bit_pi_has_neon() -> None:
    check = check_cpu("armv7l", PI3_32BIT)
    assert check.status == "ok" and check.data["features"]["neon"] is True


def test_cpu_mismatch_means_emulation() -> None:
    check = check_cpu("aarch64", X86_CPUINFO)  # qemu-user shows the host's x86 cpuinfo
    assert check.status == "warn" and check.data["emulated"] is True
    assert "emulated" in check.detail


# ---- runtimes -----------------------------------------------------------------------------

LITERT_CRASH = Attempt("litert", "2.3.0", "crashed", "crashed with SIGSEGV", "SIGSEGV")
LITERT_OK = Attempt(
    "litert", "2.3.0", "ok", "ok (4.0 ms first invoke)", invoke_ms=4.0, warm_ms=3.9, delegated=2
)
TFLITE_OK = Attempt(
    "tflite",
    "2.14.0",
    "ok",
    "ok (190.0 ms first invoke)",
    invoke_ms=190.0,
    warm_ms=185.0,
    delegated=0,
)
TFLITE_MISSING = Attempt("tflite", None, "missing", "not installed")


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_crash_is_a_warning_when_another_runtime_works() -> None:
    checks = _by_name(check_runtimes([LITERT_CRASH, TFLITE_OK], "auto"))
    litert = checks["runtime ai-edge-litert"]
    assert litert.status == "warn" and litert.data["signal"] == "SIGSEGV"
    assert litert.fix is not None and 'model.runtime = "auto"' in litert.fix
    assert checks["runtime choice"].data["runtime"] == "tflite"
    assert working_path(list(checks.values()))


def test_no_working_runtime_fails_with_the_install_fix() -> None:
    checks = _by_name(check_runtimes([LITERT_CRASH, TFLITE_MISSING], "auto"))
    assert checks["runtime ai-edge-litert"].status == "fail"
    assert checks["runtime tflite-runtime"].status == "fail"
    choice = checks["runtime choice"]
    assert choice.status == "fail" and choice.fix is not None and "tflite-runtime" in choice.fix
    assert not working_path(list(checks.values()))


def test_an_explicit_runtime_that_crashes_fails_even_if_auto_would_work() -> None:
    checks = _by_name(check_runtimes([LITERT_CRASH, TFLITE_OK], "litert"))
    choice = checks["runtime choice"]
    assert choice.status == "fail" and "tflite" in choice.detail
    assert choice.fix == 'set model.runtime = "auto" (or pass --runtime auto)'


def test_a_missing_fallback_is_fine_when_the_first_works() -> None:
    checks = _by_name(check_runtimes([LITERT_OK, TFLITE_MISSING], "auto"))
    assert checks["runtime tflite-runtime"].status == "ok"
    assert checks["runtime choice"].detail == "ai-edge-litert 2.3.0 (auto)"


def test_xnnpack_and_invoke_lines() -> None:
    assert check_xnnpack(LITERT_OK).status == "ok"
    slow = check_xnnpack(TFLITE_OK)
    assert slow.status == "warn" and "no XNNPACK kernels for quantized models" in slow.detail
    assert check_xnnpack(None).status == "ok"
    invoke = check_invoke(TFLITE_OK, "mobilenet_v2", emulated=True)
    assert invoke.detail.endswith("steady 185.0 ms [EMULATED CPU, not representative]")
    assert check_invoke(None, "mobilenet_v2", emulated=False).status == "fail"


# ---- state dir and systemd ----------------------------------------------------------------


def test_state_dir_checks(tmp_path: Path) -> None:
    assert check_state_dir(tmp_path, 1024, required=True).status == "ok"
    later = check_state_dir(tmp_path / "a" / "edgecam", 1024, required=True)
    assert later.status == "ok" and "(will be created)" in later.detail
    assert not (tmp_path / "a").exists()  # the doctor creates nothing
    assert list(tmp_path.iterdir()) == []  # and leaves no test file behind
    full = check_state_dir(tmp_path, 2**62, required=True)
    assert full.status == "warn" and full.fix == "free some space or lower outbox.max_bytes"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert check_state_dir(blocker / "edgecam", 1, required=True).status == "fail"
    assert check_state_dir(blocker / "edgecam", 1, required=False).status == "warn"


def test_systemd_states(tmp_path: Path) -> None:
    assert check_systemd(tmp_path).status == "warn"  # no /run/systemd/system: not booted
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    missing = check_systemd(tmp_path)
    assert missing.fix == "sudo edgecam service install"
    unit = tmp_path / "etc/systemd/system/edgecam.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    assert check_systemd(tmp_path).fix == "sudo systemctl enable --now edgecam.service"
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "edgecam.service").symlink_to(unit)
    enabled = check_systemd(tmp_path)
    assert enabled.status == "ok" and enabled.data == {
        "running": True,
        "unit": str(unit),
        "enabled": True,
    }


# ---- cameras ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "on_pi", "need"),
    [
        (None, True, ("picamera2", "0")),  # the Pi camera is the default on a Pi
        (None, False, ("none", None)),
        ("picamera2:1", False, ("picamera2", "1")),
        ("2", False, ("v4l2", "/dev/video2")),
        ("rtsp://cam.local/stream", True, ("none", None)),
    ],
)
def test_camera_need(spec: str | None, on_pi: bool, need: tuple[str, str | None]) -> None:
    assert camera_need(spec, on_pi) == need


def test_bad_source_spec_fails() -> None:
    check, need, _ = check_source("ftp://nope", on_pi=False)
    assert check.status == "fail" and need == "none" and "unsupported URL scheme" in check.detail


def test_picamera2_missing_fails_only_when_needed() -> None:
    # picamera2 cannot be imported off a Pi (its libcamera bindings come from Pi OS's apt).
    needed = check_picamera2("picamera2", "0", on_pi=True)
    assert (
        needed.status == "fail"
        and needed.fix is not None
        and "--system-site-packages" in needed.fix
    )
    assert check_picamera2("none", None, on_pi=True).status == "warn"
    assert check_picamera2("none", None, on_pi=False).status == "ok"


def test_v4l2_nodes(tmp_path: Path) -> None:
    assert check_v4l2("none", None, tmp_path).detail == "no /dev/video* nodes"
    absent = check_v4l2("v4l2", str(tmp_path / "video0"), tmp_path)
    assert absent.status == "fail" and "does not exist" in absent.detail
    (tmp_path / "video0").symlink_to("/dev/null")  # a character device, no root needed
    present = check_v4l2("v4l2", str(tmp_path / "video0"), tmp_path)
    assert present.status == "ok" and present.data["nodes"] == [str(tmp_path / "video0")]


def test_video_group_membership() -> None:
    try:
        video = grp.getgrnam("video").gr_gid
    except KeyError:  # a host without the group: the check must say so, not crash
        assert "no group named video" in check_video_group([], uid=1000).detail
        return
    assert check_video_group([video], uid=1000).status == "ok"
    outsider = check_video_group([video + 1], uid=1000)
    assert outsider.status == "warn" and outsider.fix == (
        "sudo usermod -aG video $USER, then log in again"
    )
    assert check_video_group([], uid=0).status == "ok"  # root opens anything


# ---- MQTT ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """mosquitto requiring user camera1 / right-password on a free loopback port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists() or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto not found: apt-get install mosquitto", pytrace=False)
    work = tmp_path_factory.mktemp("mosquitto")
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(work / "passwd"), "camera1", "right-password"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    (work / "mosquitto.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {work / 'passwd'}\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(work / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("mosquitto did not start", pytrace=False)
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(10)


def _mqtt(port: int, password_file: Path | None) -> MqttSection:
    data: dict[str, object] = {"url": f"mqtt://camera1@127.0.0.1:{port}"}
    if password_file is not None:
        data["password_file"] = password_file
    return MqttSection.model_validate(data)


def test_mqtt_reachable_with_the_right_password(broker: int, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("right-password\n")
    check = check_mqtt(_mqtt(broker, secret))
    assert check.status == "ok"
    assert check.detail == f"mqtt://127.0.0.1:{broker}: connected as camera1, MQTT 5"


def test_mqtt_wrong_password_is_a_failure_with_a_fix(broker: int, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("wrong-password\n")
    check = check_mqtt(_mqtt(broker, secret))
    assert check.status == "fail"
    # mosquitto answers a bad password with "not authorised" (0x87), not 0x86.
    assert "refused" in check.detail and "password" in check.detail
    assert "wrong-password" not in check.detail + str(check.fix)  # never echo the secret


def test_mqtt_nothing_listening_is_a_failure_not_a_retry_loop() -> None:
    check = check_mqtt(_mqtt(_free_port(), None), timeout_s=2.0)
    assert check.status == "fail" and "cannot reach the MQTT broker" in check.detail
    assert check.fix is not None and "broker is running" in check.fix


def test_mqtt_cluster_with_a_node_down_is_a_warning_and_with_all_down_a_failure(
    broker: int, tmp_path: Path
) -> None:
    """Each node of mqtt.url is checked: some down is a warning (devices move to the others),
    all down a failure naming each."""
    secret = tmp_path / "pw"
    secret.write_text("right-password\n")
    dead, dead2 = _free_port(), _free_port()

    def nodes(*ports: int) -> MqttSection:
        urls = [f"mqtt://camera1@127.0.0.1:{p}" for p in ports]
        return MqttSection.model_validate({"url": urls, "password_file": secret})

    up = check_mqtt(nodes(broker, dead), timeout_s=2.0)
    assert up.status == "warn"
    assert up.detail.startswith("1 of 2 nodes connected as camera1, MQTT 5")
    assert f"mqtt://127.0.0.1:{dead}: cannot reach the MQTT broker" in up.detail
    assert up.fix is not None and "mqtt.url" in up.fix
    assert [n["ok"] for n in up.data["nodes"]] == [True, False]
    down = check_mqtt(nodes(dead, dead2), timeout_s=2.0)
    assert down.status == "fail"
    assert down.detail.startswith("none of the 2 broker nodes accepted the connection")
    assert f"127.0.0.1:{dead}:" in down.detail and f"127.0.0.1:{dead2}:" in down.detail


def test_mqtt_not_configured_is_fine() -> None:
    check = check_mqtt(MqttSection.model_validate({}))
    assert check.status == "ok" and "not configured" in check.detail


def test_missing_password_file_is_a_failure(broker: int, tmp_path: Path) -> None:
    check = check_mqtt(_mqtt(broker, tmp_path / "absent"))
    assert check.status == "fail" and "password_file" in check.detail


# ---- report -------------------------------------------------------------------------------


def test_render_shows_fixes_and_the_verdict() -> None:
    checks = [
        Check("cpu", "ok", "neon yes"),
        Check("mqtt", "fail", "cannot reach", "start the broker"),
        Check("systemd", "warn", "not running"),
    ]
    text = render(checks)
    assert "fail  mqtt     cannot reach\n               fix: start the broker" in text
    assert text.endswith("NOT OK: 1 check(s) failed, 1 warning(s)")
    assert render(checks[:1]).endswith("OK: a working path exists (0 warning(s))")
