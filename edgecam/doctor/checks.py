"""`edgecam doctor`: what a new board has, what works, and what to fix.

Each check is a function from facts to a :class:`Check` (ok / warn / fail, one-line detail,
the fix); the facts (/proc/cpuinfo text, /etc/os-release, probe results, device nodes) are
gathered by small readers with the paths as parameters, so the judgement is testable with
real files from elsewhere. "fail" means the configured path cannot work; "warn" means it works
but something is slow, missing or surprising. A working path exists when nothing fails.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgecam.runtime.interpreter import AUTO_ORDER, RUNTIMES
from edgecam.runtime.select import Attempt

Status = Literal["ok", "warn", "fail"]
ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l")
#: Interesting CPU features per architecture: /proc/cpuinfo name -> what we call it.
CPU_FEATURES: dict[str, dict[str, str]] = {
    "arm64": {
        "asimd": "neon",
        "asimddp": "dotprod",
        "atomics": "lse",
        "asimdhp": "fp16",
        "i8mm": "i8mm",
        "sve": "sve",
    },
    "arm32": {"neon": "neon", "vfpv4": "vfpv4", "idiva": "idiv", "asimddp": "dotprod"},
    "x86": {
        "sse4_1": "sse4.1",
        "avx": "avx",
        "avx2": "avx2",
        "fma": "fma",
        "f16c": "f16c",
        "avx512f": "avx512f",
        "avx512bw": "avx512bw",
        "avx512_vnni": "avx512vnni",
        "avx_vnni": "avxvnni",
    },
}
INSTALL_FIX = "pip install tflite-runtime 'numpy<2' (any Pi) or ai-edge-litert (x86_64/aarch64)"
TFLITE_MIN_GLIBC = (2, 34)  # tflite-runtime 2.14 ARM wheels are manylinux_2_34


@dataclass(frozen=True)
class Check:
    """One line of the report. data: machine-readable facts for --json."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "data": dict(self.data),
        }


def working_path(checks: Sequence[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


# ---- platform and CPU ---------------------------------------------------------------------


def read_os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """KEY=value lines (values optionally quoted); {} when the file is missing."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            result[key.strip()] = value.strip().strip("\"'")
    return result


def platform_facts() -> dict[str, Any]:
    """This process's machine, Python and C library (what the wheels were chosen for)."""
    libc, libc_version = platform.libc_ver()
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libc": libc or "unknown",
        "libc_version": libc_version,
    }


def check_platform(
    facts: Mapping[str, Any], os_release: Mapping[str, str], board: str | None
) -> Check:
    machine = str(facts.get("machine", "?"))
    os_name = os_release.get("PRETTY_NAME") or os_release.get("NAME") or "unknown OS"
    libc = f"{facts.get('libc')} {facts.get('libc_version')}".strip()
    detail = f"{machine}, {os_name}, Python {facts.get('python')}, {libc}"
    if board:
        detail = f"{board}: {detail}"
    data = {**facts, "os": os_name, "os_id": os_release.get("VERSION_CODENAME"), "board": board}
    glibc = _version_tuple(str(facts.get("libc_version", "")))
    if machine in ARM_MACHINES and facts.get("libc") == "glibc" and glibc < TFLITE_MIN_GLIBC:
        return Check(
            "platform",
            "warn",
            f"{detail}: glibc older than 2.34, no tflite-runtime wheel fits (the fallback "
            "interpreter)",
            "upgrade to Raspberry Pi OS Bookworm (glibc 2.36) or newer",
            data,
        )
    if machine in ("armv6l", "armv5tel"):
        return Check(
            "platform",
            "fail",
            f"{detail}: no TFLite runtime publishes wheels for {machine}",
            "use a Raspberry Pi 2 or newer (armv7l / aarch64)",
            data,
        )
    return Check("platform", "ok", detail, None, data)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def cpu_family(machine: str) -> str:
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine.startswith("arm"):
        return "arm32"
    return "x86" if machine in ("x86_64", "amd64", "i686", "i386") else machine


def cpu_flags(cpuinfo: str) -> tuple[str | None, set[str]]:
    """('Features' | 'flags' | None, the first such line's words) from /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Features", "flags"):
            return key.strip(), set(value.split())
    return None, set()


def check_cpu(machine: str, cpuinfo: str) -> Check:
    """NEON / dotprod / LSE atomics on ARM, AVX2 / AVX-512 on x86 (what XNNPACK picks from)."""
    family = cpu_family(machine)
    wanted = CPU_FEATURES.get(family, {})
    key, flags = cpu_flags(cpuinfo)
    describes_arm = key == "Features"
    if family in ("arm64", "arm32") and not describes_arm:
        return Check(
            "cpu",
            "warn",
            f"/proc/cpuinfo does not describe an ARM CPU although this process runs as "
            f"{machine}: emulated (qemu-user)? Timings below are not representative",
            None,
            {"emulated": True, "features": {}},
        )
    present = {name: cpuinfo_name in flags for cpuinfo_name, name in wanted.items()}
    shown = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in present.items())
    data = {"emulated": False, "features": present}
    if family == "arm64" and not present.get("lse"):
        return Check(
            "cpu",
            "ok",
            f"{shown}: no LSE atomics (ARMv8.0, e.g. Cortex-A72 in the Pi 4): binaries built "
            "for ARMv8.1+ can die with SIGILL; the runtime probes below show which work",
            None,
            data,
        )
    if family == "arm32" and not present.get("neon"):
        return Check(
            "cpu",
            "warn",
            f"{shown}: no NEON, TFLite kernels will be very slow",
            "use a Raspberry Pi 2 or newer",
            data,
        )
    if family == "x86" and not present.get("avx2"):
        return Check(
            "cpu", "warn", f"{shown}: no AVX2, XNNPACK falls back to SSE kernels", None, data
        )
    return Check("cpu", "ok", shown or f"{machine}: no features read", None, data)


# ---- runtimes -----------------------------------------------------------------------------


def check_runtimes(attempts: Sequence[Attempt], configured: str) -> list[Check]:
    """One check per runtime, then the choice `configured` (auto|litert|tflite) leads to."""
    order = AUTO_ORDER if configured == "auto" else (configured,)
    chosen = next((a for b in order for a in attempts if a.runtime == b and a.status == "ok"), None)
    any_ok = any(a.status == "ok" for a in attempts)
    checks = [_runtime_check(a, any_ok) for a in attempts]
    if chosen is not None:
        extra = f" (model.runtime = {configured})" if configured != "auto" else " (auto)"
        checks.append(
            Check(
                "runtime choice",
                "ok",
                f"{chosen.package} {chosen.version}{extra}",
                None,
                {"runtime": chosen.runtime, "version": chosen.version},
            )
        )
    elif any_ok:
        ok_names = ", ".join(a.runtime for a in attempts if a.status == "ok")
        checks.append(
            Check(
                "runtime choice",
                "fail",
                f"model.runtime = {configured} does not work here; {ok_names} does",
                'set model.runtime = "auto" (or pass --runtime auto)',
                {"runtime": None},
            )
        )
    else:
        checks.append(
            Check(
                "runtime choice",
                "fail",
                "no TFLite runtime runs the model here",
                INSTALL_FIX,
                {"runtime": None},
            )
        )
    return checks


def _runtime_check(attempt: Attempt, any_ok: bool) -> Check:
    name = f"runtime {attempt.package}"
    data = {
        "runtime": attempt.runtime,
        "version": attempt.version,
        "probe": attempt.status,
        "signal": attempt.signal_name,
        "invoke_ms": attempt.invoke_ms,
    }
    version = f"{attempt.version}: " if attempt.version else ""
    if attempt.status == "ok":
        return Check(name, "ok", f"{version}{attempt.detail}", None, data)
    if attempt.status == "missing":
        status: Status = "ok" if any_ok else "fail"
        return Check(name, status, "not installed", None if any_ok else INSTALL_FIX, data)
    fix = _probe_fix(attempt)
    return Check(name, "warn" if any_ok else "fail", f"{version}{attempt.detail}", fix, data)


def _probe_fix(attempt: Attempt) -> str:
    if attempt.status == "crashed":
        why = {
            "SIGILL": "an instruction this CPU lacks (e.g. LSE atomics on a Cortex-A72)",
            "SIGSEGV": "a crash inside the runtime",
            "SIGBUS": "an unaligned or unmapped memory access",
        }.get(attempt.signal_name or "", "a fatal signal")
        return (
            f'{attempt.package} dies with {why}: keep model.runtime = "auto" so edgecam uses '
            "another runtime (install tflite-runtime 'numpy<2' if none is left)"
        )
    if attempt.status == "hang":
        return "the runtime did not finish one invoke in time: try model.threads = 1"
    if "numpy" in attempt.detail.lower():
        return "tflite-runtime needs numpy<2: pip install 'numpy<2'"
    return f"pip install --force-reinstall {attempt.package}"


def check_xnnpack(chosen: Attempt | None) -> Check:
    """Does the chosen runtime run this model's kernels in XNNPACK (the fast CPU path)?"""
    if chosen is None or chosen.delegated is None:
        return Check("xnnpack", "ok", "unknown (the runtime does not list its delegates)")
    data = {"delegate_nodes": chosen.delegated}
    if chosen.delegated > 0:
        return Check(
            "xnnpack",
            "ok",
            f"{chosen.package}: XNNPACK runs (part of) this model "
            f"({chosen.delegated} delegate node(s) in the plan)",
            None,
            data,
        )
    if chosen.runtime == "tflite":
        why = "tflite-runtime 2.14 has no XNNPACK kernels for quantized models"
        hint: str | None = f"{RUNTIMES['litert'][0]} runs them in XNNPACK, where it works"
    else:
        why, hint = "no op of this model is supported by its XNNPACK build", None
    return Check(
        "xnnpack",
        "warn",
        f"{chosen.package} {chosen.version} runs none of this model in XNNPACK ({why}): "
        "slower than it could be",
        hint,
        data,
    )


def check_invoke(chosen: Attempt | None, model_name: str, emulated: bool) -> Check:
    if chosen is None or chosen.invoke_ms is None:
        return Check(
            "invoke",
            "fail",
            f"{model_name}: no runtime could invoke it",
            "see the runtime checks above",
        )
    steady = f", steady {chosen.warm_ms:.1f} ms" if chosen.warm_ms is not None else ""
    label = " [EMULATED CPU, not representative]" if emulated else ""
    return Check(
        "invoke",
        "ok",
        f"{model_name} with {chosen.package}: first {chosen.invoke_ms:.1f} ms{steady}{label}",
        None,
        {"first_ms": chosen.invoke_ms, "warm_ms": chosen.warm_ms, "emulated": emulated},
    )


# ---- state dir and systemd ----------------------------------------------------------------


def check_state_dir(path: Path, need_bytes: int, *, required: bool) -> Check:
    """Writable (tested with a real file) and room for the outbox cap. Creates nothing else."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    data: dict[str, Any] = {"path": str(path), "exists": path.is_dir()}
    bad: Status = "fail" if required else "warn"
    fix = "set service.state_dir to a writable directory (systemd's StateDirectory= does it)"
    if not existing.is_dir():
        return Check("state dir", bad, f"{path}: {existing} is not a directory", fix, data)
    if not _writable(existing):
        return Check(
            "state dir", bad, f"{path}: {existing} is not writable by this user", fix, data
        )
    free = shutil.disk_usage(existing).free
    data["free_bytes"] = free
    where = str(path) if path.is_dir() else f"{path} (will be created)"
    if free < need_bytes:
        return Check(
            "state dir",
            "warn",
            f"{where}: {free / 2**20:.0f} MiB free, the outbox may need {need_bytes / 2**20:.0f}",
            "free some space or lower outbox.max_bytes",
            data,
        )
    return Check("state dir", "ok", f"{where}: writable, {free / 2**30:.1f} GiB free", None, data)


def _writable(directory: Path) -> bool:
    probe = directory / f".edgecam-doctor-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def check_systemd(root: Path = Path("/"), unit: str = "edgecam.service") -> Check:
    running = (root / "run/systemd/system").is_dir()
    unit_dirs = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
    installed = next((root / d / unit for d in unit_dirs if (root / d / unit).is_file()), None)
    enabled = (root / "etc/systemd/system/multi-user.target.wants" / unit).exists()
    data = {"running": running, "unit": str(installed) if installed else None, "enabled": enabled}
    if not running:
        return Check(
            "systemd",
            "warn",
            "systemd is not running here (container or chroot?): "
            "edgecam can only run in the foreground",
            None,
            data,
        )
    if installed is None:
        return Check(
            "systemd", "warn", f"{unit} is not installed", "sudo edgecam service install", data
        )
    if not enabled:
        return Check(
            "systemd",
            "warn",
            f"{installed} installed but not enabled",
            f"sudo systemctl enable --now {unit}",
            data,
        )
    return Check("systemd", "ok", f"{installed} installed and enabled", None, data)


# ---- report -------------------------------------------------------------------------------


def render(checks: Sequence[Check]) -> str:
    """The human-readable checklist."""
    width = max((len(c.name) for c in checks), default=8)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    fails = sum(c.status == "fail" for c in checks)
    warns = sum(c.status == "warn" for c in checks)
    verdict = (
        f"OK: a working path exists ({warns} warning(s))"
        if not fails
        else f"NOT OK: {fails} check(s) failed, {warns} warning(s)"
    )
    return "\n".join([*lines, verdict])
