"""The user mosquitto runs as, and the files that user must be able to open.

mosquitto started as root drops its privileges to the ``user`` its configuration names (the
``mosquitto`` account when unset) and only then opens its server key and its persistence
directory: a root-owned ``0600`` key, or a data directory inside a ``0700`` one, then stops
the broker from starting or from saving (every session then dies with it). Started by anyone
else, mosquitto stays that user and ``user`` has no effect.

So the generated configurations name the account explicitly: the ``mosquitto`` account when
root starts the broker and it exists, else the caller. As root, the files the broker needs
are handed to that account (``chown``; a key stays ``0600``), and every path is checked the
way the kernel will check it, directory by directory, before mosquitto tries.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

BROKER_ACCOUNT: Final = "mosquitto"
"""The account Debian's package creates and mosquitto drops to by default."""


@dataclass(frozen=True, slots=True)
class Account:
    """A local user as the kernel sees it for permission checks."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def account(name: str) -> Account | None:
    """The local user ``name`` with its groups, or None when there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def current_account() -> Account:
    """The user this process runs as."""
    entry = pwd.getpwuid(os.geteuid())
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid,
                   frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)))


def running_as_root() -> bool:
    """Whether this process may hand files to another user (and mosquitto would drop to one)."""
    return os.geteuid() == 0


def default_broker_account() -> Account:
    """Who mosquitto should run as: ``mosquitto`` when root starts it and the account exists,
    else the caller (mosquitto started by a normal user stays that user anyway)."""
    if running_as_root():
        found = account(BROKER_ACCOUNT)
        if found is not None:
            return found
    return current_account()


def _allows(info: os.stat_result, who: Account, want: int) -> bool:
    """Whether the mode bits of ``info`` grant ``who`` every bit of ``want`` (r=4, w=2, x=1).

    As the kernel does without ACLs: the owner's bits if ``who`` owns it, else the group's if
    ``who`` is in its group, else the others'; root passes everything but needs an ``x`` bit
    somewhere to execute, which never matters here.
    """
    if who.uid == 0:
        return True
    if info.st_uid == who.uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in who.groups:
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & want == want


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o} {_owner(info.st_uid)}:{_group(info.st_gid)}"


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def blocked(path: Path, who: Account) -> str | None:
    """Why ``who`` cannot get through the directories above ``path`` (each needs ``x``), or
    None; directories that do not exist yet are skipped (whoever creates them decides)."""
    for parent in reversed(path.absolute().parents):
        try:
            info = parent.stat()
        except FileNotFoundError:
            break
        if not _allows(info, who, 1):
            return f"{who.name} may not enter {parent} ({_mode(info)})"
    return None


def unreachable(path: Path, who: Account, *, write: bool = False) -> str | None:
    """Why ``who`` cannot open ``path`` (read it; with ``write``, create files in the
    directory), or None when it can. Every directory above must let ``who`` pass (``x``)."""
    path = path.absolute()
    reason = blocked(path, who)
    if reason is not None:
        return reason
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    if stat.S_ISDIR(info.st_mode):
        want, what = (7, "write into") if write else (5, "list")
    else:
        want, what = (6, "write") if write else (4, "read")
    if not _allows(info, who, want):
        return f"{who.name} may not {what} {path} ({_mode(info)})"
    return None


def hand_over(path: Path, who: Account) -> None:
    """Make ``who`` the owner of ``path`` (its primary group too), keeping the mode.

    Only root may; for anyone else, or when ``who`` owns it already, nothing changes.
    """
    if not running_as_root():
        return
    info = path.stat()
    if (info.st_uid, info.st_gid) != (who.uid, who.gid):
        os.chown(path, who.uid, who.gid)
