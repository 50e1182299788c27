"""`[source]`: where frames come from and how a lost live source is reconnected."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from edgecam.config.base import Section, check_env_name
from edgecam.secrets import read_secret, url_passwords
from edgecam.sources.base import DEFAULT_MAX_PIXELS


class SourceSection(Section):
    """`[source]`: where frames come from (see edgecam.sources.open_source for the spec grammar)."""

    spec: str | None = Field(
        None, description="file, frames dir, image, camera index, URL, picamera2"
    )
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    fps: float | None = Field(None, gt=0, le=240)
    loop: bool = False
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        le=2_000_000_000,
        description="largest image or video frame decoded (width x height); larger ones are "
        "refused before decoding (about 3 bytes of memory per pixel)",
    )
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    read_timeout_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="live source: a read with no frame for this long counts as a dropped "
        "camera and starts a reconnect (default: 5 s for V4L2/RTSP/HTTP, 2 s for picamera2)",
    )
    give_up_s: float = Field(
        300.0, gt=0, description="live source: exit non-zero after this long without frames"
    )
    password_file: Path | None = Field(
        None, description="password of a stream URL given as rtsp://USER@host/... (file)"
    )
    password_env: str | None = Field(
        None, description="password of a stream URL given as rtsp://USER@host/... (env var)"
    )

    _env = field_validator("password_env")(check_env_name)

    @model_validator(mode="after")
    def _password_needs_a_user(self) -> SourceSection:
        given = [n for n in ("password_file", "password_env") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError("set only one of password_file, password_env")
        if given:
            spec = self.spec or ""
            if url_passwords(spec):
                raise ValueError(f"{given[0]} is set but source.spec already has a password")
            if "://" not in spec or "@" not in spec.split("://", 1)[1].split("/", 1)[0]:
                raise ValueError(
                    f"{given[0]} needs a stream URL with a user name: rtsp://USER@host/..."
                )
        return self


def source_password(section: SourceSection) -> str | None:
    """The stream password from its file or environment variable (read only when opening)."""
    return read_secret("source.password", file=section.password_file, env=section.password_env)
