"""The environment's key: what changes it, what never goes into it; the ATTUNE_ENV* settings."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import threading
from pathlib import Path

import pytest

from attune.environments import builder
from attune.environments.installer import choose, public_url
from attune.environments.interpreter import worker_interpreter
from attune.environments.requirements import read_requirements
from attune.environments.spec import EnvironmentSpec
from attune.errors import PackEnvironmentError, SettingsError
from attune.settings import EnvSettings, Settings
from tests.pack_builder import write_pack


@pytest.fixture
def spec(tmp_path: Path) -> EnvironmentSpec:
    pack_dir = write_pack(tmp_path / "packs", "keyed")
    (pack_dir / "requirements.txt").write_text("demo-lib==1.0\n")
    requirements, problems = read_requirements(pack_dir)
    assert requirements is not None, problems
    return EnvironmentSpec(
        pack="keyed",
        pack_dir=pack_dir,
        requirements=requirements,
        interpreter=worker_interpreter(),
        installer=choose("pip"),
        envs=EnvSettings(envs_dir=tmp_path / "envs"),
    )


def test_each_input_changes_the_key(spec: EnvironmentSpec) -> None:
    requirements = dataclasses.replace(spec.requirements, digest="0" * 64)
    interpreter = dataclasses.replace(spec.interpreter, version="3.12.0")
    installer = dataclasses.replace(spec.installer, version="0.0.1")
    variants = [
        dataclasses.replace(spec, requirements=requirements),
        dataclasses.replace(spec, interpreter=interpreter),
        dataclasses.replace(spec, interpreter=dataclasses.replace(spec.interpreter, abi="x")),
        dataclasses.replace(spec, installer=installer),
        dataclasses.replace(spec, envs=dataclasses.replace(spec.envs, offline=True)),
        dataclasses.replace(spec, envs=dataclasses.replace(spec.envs, find_links=("/w",))),
        dataclasses.replace(spec, envs=dataclasses.replace(spec.envs, index_url="https://i/")),
    ]

    keys = {spec.key, *(variant.key for variant in variants)}

    assert len(keys) == 1 + len(variants)
    assert all(len(key) == 64 for key in keys)
    assert spec.path == spec.envs.envs_dir / "keyed" / spec.key[:16]


def test_where_the_environments_live_and_the_timeout_do_not_change_the_key(
    spec: EnvironmentSpec, tmp_path: Path
) -> None:
    moved = dataclasses.replace(spec.envs, envs_dir=tmp_path / "elsewhere", timeout_s=5)

    assert dataclasses.replace(spec, envs=moved).key == spec.key


def test_credentials_never_go_into_the_key(spec: EnvironmentSpec) -> None:
    index = "https://user:s3cret@pypi.example.org:8443/simple"
    with_secret = dataclasses.replace(spec, envs=dataclasses.replace(spec.envs, index_url=index))

    assert "s3cret" not in json.dumps(with_secret.inputs)
    assert public_url(index) == "https://pypi.example.org:8443/simple"
    assert public_url("https://pypi.org/simple") == "https://pypi.org/simple"


def test_env_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "ATTUNE_ENVS_DIR": "/srv/envs",
            "ATTUNE_ENV_TIMEOUT_S": "30",
            "ATTUNE_ENV_INSTALLER": "pip",
            "ATTUNE_ENV_OFFLINE": "yes",
            "ATTUNE_ENV_FIND_LINKS": "/w1, /w2 https://wheels.example.org/",
            "ATTUNE_ENV_INDEX_URL": "https://pypi.example.org/simple",
            "HTTPS_PROXY": "http://proxy:3128",
            "AWS_SECRET_ACCESS_KEY": "never",
            "PATH": "/usr/bin",
        }
    )

    envs = settings.envs
    assert (envs.envs_dir, envs.timeout_s, envs.installer) == (Path("/srv/envs"), 30, "pip")
    assert envs.offline is True
    assert envs.find_links == ("/w1", "/w2", "https://wheels.example.org/")
    assert envs.index_url == "https://pypi.example.org/simple"
    assert envs.installer_env == {"HTTPS_PROXY": "http://proxy:3128", "PATH": "/usr/bin"}
    assert Settings.from_env({}).envs.envs_dir.parts[-2:] == ("attune", "envs")
    for name, value in (
        ("ATTUNE_ENV_INSTALLER", "conda"),
        ("ATTUNE_ENV_OFFLINE", "maybe"),
        ("ATTUNE_ENV_TIMEOUT_S", "0"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_auto_takes_uv_when_importable() -> None:
    assert choose("auto").name == "uv"  # the dev extra installs it
    assert choose("uv").label().startswith("uv ")
    assert choose("pip").label().startswith("pip ")


def test_a_wait_for_another_build_ends_on_cancel_and_on_the_timeout(
    spec: EnvironmentSpec,
) -> None:
    spec.path.parent.mkdir(parents=True)
    lock = spec.path.with_name(spec.path.name + ".lock")
    holder = lock.open("w")  # another process's build, as far as flock can tell
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
    canceled = threading.Event()
    threading.Timer(0.2, canceled.set).start()
    quick = dataclasses.replace(spec, envs=dataclasses.replace(spec.envs, timeout_s=0.2))
    try:
        with pytest.raises(PackEnvironmentError) as on_cancel:
            builder.ensure(spec, canceled)
        with pytest.raises(PackEnvironmentError) as on_timeout:
            builder.ensure(quick, threading.Event())
    finally:
        holder.close()

    assert on_cancel.value.canceled
    assert not on_timeout.value.canceled
    assert "held the lock" in str(on_timeout.value)
    assert "ATTUNE_ENV_TIMEOUT_S=0.2 s" in str(on_timeout.value)
    assert not spec.path.exists()
