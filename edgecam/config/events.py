"""Config sections for tracking, per-label filters, zones, events and snapshots.

```toml
[events]                 # opt-in: tracked-object events + per-label counts
enabled = true

[tracking]
max_disappeared = 30     # source frames (incl. frames the pipeline skipped)

[objects]                # defaults for every label
deny = ["tv"]            # never track these (allow = [...] tracks only those)
min_score = 0.5
confirm_score = 0.6      # median of the last confirm_frames scores needed for an event

[objects.filters.person] # per-label overrides; unset keys inherit [objects]
min_area = 0.005
max_ratio = 1.5

[[zones]]
name = "driveway"
points = [[0.1, 0.55], [0.9, 0.55], [0.95, 1.0], [0.05, 1.0]]   # normalized x, y

[snapshots]
enabled = true
crop = true
dir = "/var/lib/edgecam/snapshots"
```

Defaults explained: ``min_score`` 0.5 is the usual detector threshold; ``confirm_score`` 0.6
sits a step above it (Frigate uses 0.7 over min 0.5 for its larger models; int8 SSD-MobileNet
scores real people mostly in 0.55-0.85). ``confirm_frames`` 5 needs 3 good observations,
~0.3-0.6 s at 5-10 fps. ``max_disappeared`` 30 frames is 1-3 s at 10-30 fps. ``match_buffer``
0.5 links a walker seen at ~5 fps (moving about half its width per frame). ``duplicate_overlap``
0.8 only merges boxes that are nearly nested (side-by-side people overlap far less).
Nested tables (``[objects.filters.<label>]``, ``[[zones]]``) are file-only: command-line
overrides address ``section.key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from edgecam.config.base import Section

if TYPE_CHECKING:
    pass


class EventsSection(Section):
    """`[events]`: tracked-object lifecycle messages (new / update / end) and counts."""

    enabled: bool = Field(False, description="track objects and publish events and counts")
    score_margin: float = Field(
        0.05, ge=0, le=1, description="rise of the best score that is worth an `update` event"
    )
