"""The installer's version policy: exactly the locked version while Debian serves it,
otherwise follow Debian within the supported series, otherwise a clear error."""

from __future__ import annotations

import pytest

from pcc.condor_config.install_condor import Choice, InstallError, choose_version, read_lock, upstream_of


@pytest.mark.parametrize(
    ("deb", "upstream"),
    [
        ("25.14.1+dfsg-1", "25.14.1"),
        ("1:25.0.3-2", "25.0.3"),
        ("23.9.6+dfsg-2.1+b10", "23.9.6"),
        ("25.15.0~rc1-1", "25.15.0"),
        ("25.1.0", "25.1.0"),
    ],
)
def test_upstream_version_drops_epoch_repack_and_revision(deb: str, upstream: str) -> None:
    assert upstream_of(deb) == upstream


def test_the_locked_version_is_chosen_while_debian_serves_it() -> None:
    choice = choose_version(["23.9.6+dfsg-2.1+b10", "25.14.1+dfsg-1", "25.15.0+dfsg-1"], "25.14.1")
    assert choice == Choice("25.14.1+dfsg-1", "25.14.1", False, "condor 25.14.1 as locked in condor.lock")


def test_the_newest_debian_revision_of_the_locked_version_wins() -> None:
    assert choose_version(["25.14.1+dfsg-1", "25.14.1+dfsg-2"], "25.14.1").deb_version == "25.14.1+dfsg-2"


def test_when_debian_moved_on_the_newest_version_of_the_series_is_followed_and_said() -> None:
    choice = choose_version(["23.9.6+dfsg-2.1+b10", "25.16.0+dfsg-1", "25.9.0+dfsg-1"], "25.14.1")
    assert (choice.upstream, choice.followed_debian) == ("25.16.0", True)
    assert "no longer serves the locked condor 25.14.1" in choice.note


def test_a_version_outside_the_supported_series_is_an_error_naming_what_to_change() -> None:
    with pytest.raises(InstallError, match=r"condor_config/condor.lock.*pyproject.toml"):
        choose_version(["23.9.6+dfsg-2.1+b10", "26.0.1+dfsg-1"], "25.14.1")


def test_an_empty_archive_listing_is_an_error() -> None:
    with pytest.raises(InstallError, match="no 'condor' package"):
        choose_version([], "25.14.1")


def test_the_shipped_lock_names_a_version_in_the_supported_series() -> None:
    assert read_lock().startswith("25.")
