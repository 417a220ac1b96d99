import pytest

from repro import profile

TABLE = {"smoke": {"steps": 2, "width": 8}, "default": {"steps": 20, "width": 32}, "full": {"steps": 2000, "width": 256}}


def test_resolve_order(monkeypatch):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    assert profile.resolve(None) == "default"
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    assert profile.resolve(None) == "smoke"
    assert profile.resolve("full") == "full"  # an explicit profile (papermill -p) wins over the environment


def test_unknown_profile_lists_valid(monkeypatch):
    with pytest.raises(profile.ProfileError, match="smoke, default, full"):
        profile.resolve("tiny")
    monkeypatch.setenv("REPRO_PROFILE", "huge")
    with pytest.raises(profile.ProfileError, match="'huge'"):
        profile.resolve(None)


def test_expand_with_overrides():
    cfg = profile.expand("smoke", TABLE, steps=None, width=16)
    assert dict(cfg) == {"steps": 2, "width": 16, "profile": "smoke"}
    with pytest.raises(TypeError):
        cfg["steps"] = 3  # read-only


def test_expand_rejects_unknown_setting_and_bad_table():
    with pytest.raises(profile.ProfileError, match="unknown setting.*depth.*valid: steps, width"):
        profile.expand("default", TABLE, depth=3)
    with pytest.raises(profile.ProfileError, match="lacks full"):
        profile.expand("default", {"smoke": {}, "default": {}})
    with pytest.raises(profile.ProfileError, match="'full' has keys"):
        profile.expand("default", {**TABLE, "full": {"steps": 1}})
