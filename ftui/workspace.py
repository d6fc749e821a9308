"""Who may see and change which runs: a workspace per signed-in user when sign-in (OAuth) is on, one shared otherwise."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ftui.config import RunConfig
from ftui.errors import FtuiError
from ftui.settings import Settings

# A Hub username (letters, digits, '-', '_', '.'); it names a folder, so nothing else passes.
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
USERS_DIR = "users"  # <runs>/users/<username>/<run_id>: each signed-in user's runs in their own folder


@dataclass(frozen=True)
class Viewer:
    """The person behind a request, as the engine's checks see them."""

    user: str = ""  # the signed-in Hub username ('' = not signed in)
    admin: bool = False  # sees and manages every run (FTUI_ADMINS), or no sign-in at all (one shared workspace)
    scoped: bool = False  # sign-in is on: a viewer sees their own runs and showcase runs only


LOCAL = Viewer(admin=True)  # without sign-in everybody controls everything, as on a laptop
ANONYMOUS = Viewer(scoped=True)  # sign-in is on and this request carries none: showcase runs, read-only


def run_folder(runs_dir: Path, run_id: str, user: str) -> Path:
    """Where a run's files live: <runs>/<run_id> without an owner, <runs>/users/<user>/<run_id> with one."""
    if user and USER_RE.fullmatch(user):
        return runs_dir / USERS_DIR / user / run_id
    return runs_dir / run_id


def round_robin(items: Sequence[tuple[str, str]], last_start: dict[str, float]) -> str | None:
    """The queued item to start next: the oldest item of the user whose last run started longest ago (never first),
    so one user's long queue cannot starve another's. `items` are (item_id, user) in queue order."""
    if not items:
        return None
    order = {user: k for k, (_, user) in reversed(list(enumerate(items)))}  # each user's first place in the queue
    user = min(order, key=lambda u: (last_start.get(u, float("-inf")), order[u]))
    return items[order[user]][0]


class Workspaces:
    """The ownership rules of one deployment, applied by the engine to every request (the UI only passes who asks)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.oauth
        self.admins = frozenset(settings.admins)
        self.per_user = settings.max_queue_per_user

    def viewer(self, user: str | None) -> Viewer:
        """The viewer for a signed-in username (None or '' = nobody signed in)."""
        if not self.enabled:
            return LOCAL
        if not user or not USER_RE.fullmatch(user):
            return ANONYMOUS
        return Viewer(user=user, admin=user in self.admins, scoped=True)

    def default(self) -> Viewer:
        """Who a call that names nobody is: everybody without sign-in, an anonymous visitor with it (least privilege)."""
        return ANONYMOUS if self.enabled else LOCAL

    @staticmethod
    def can_see(viewer: Viewer, run: Any) -> bool:
        """Own runs, showcase runs, or everything for an admin (and without sign-in)."""
        return viewer.admin or bool(viewer.user) and run.config.user == viewer.user or bool(getattr(run, "showcase", False))

    @staticmethod
    def can_manage(viewer: Viewer, run: Any) -> bool:
        """Own runs, or everything for an admin (and without sign-in)."""
        return viewer.admin or bool(viewer.user) and run.config.user == viewer.user

    def visible(self, viewer: Viewer, runs: Iterable[Any]) -> list[Any]:
        """The runs this viewer may see, in the given order."""
        return [r for r in runs if self.can_see(viewer, r)]

    def require_see(self, viewer: Viewer, run: Any) -> Any:
        """The run, when the viewer may see it; otherwise the same answer as for a run that does not exist."""
        if run is None or not self.can_see(viewer, run):
            raise FtuiError("That run is not one you can see.", "Pick a run from the table (sign in to see your own).")
        return run

    def require_manage(self, viewer: Viewer, run: Any, action: str) -> Any:
        """The run, when the viewer may change it (`action` says how, for the message)."""
        self.require_see(viewer, run)
        if not self.can_manage(viewer, run):
            raise FtuiError(
                f"Run '{run.name}' belongs to another user: only its owner or an admin can {action} it.",
                "Train your own run, or ask an admin of this Space.",
            )
        return run

    def require_admin(self, viewer: Viewer, action: str) -> None:
        """Only admins (and everyone without sign-in) may do this."""
        if not viewer.admin:
            raise FtuiError(f"Only an admin of this Space can {action}.", "Ask one of its admins (FTUI_ADMINS).")

    def require_user(self, viewer: Viewer, action: str) -> None:
        """With sign-in on, starting work needs a signed-in user (anonymous visitors get the showcase only)."""
        if viewer.scoped and not viewer.user:
            raise FtuiError(
                f"Sign in with Hugging Face to {action}.", "Press 'Sign in with Hugging Face' at the top of the page."
            )

    def require_own_folder(self, viewer: Viewer, runs_dir: Path, path: Path) -> None:
        """A folder inside the runs folder may be used only inside the viewer's own (their adapted checkpoints)."""
        try:
            target, root = path.expanduser().resolve(), runs_dir.resolve()
        except (OSError, RuntimeError):
            return  # unreadable paths are refused later, by the checkpoint checks
        if target.is_relative_to(root) and not target.is_relative_to(root / USERS_DIR / viewer.user):
            raise FtuiError(
                "That checkpoint folder holds another user's run: it cannot be trained from here.",
                "Pick one of your own adapted checkpoints in the Model tab.",
            )

    def stamp(self, viewer: Viewer, cfg: RunConfig) -> RunConfig:
        """The config with its owner set: the signed-in user (without sign-in the config's own, normally none)."""
        return replace(cfg, user=viewer.user) if viewer.scoped else cfg

    def queue_cap(self, viewer: Viewer) -> int:
        """How many waiting runs this viewer may have (0 = only the folder's cap applies)."""
        return self.per_user if viewer.scoped and not viewer.admin and self.per_user > 0 else 0
