"""A local wheelhouse for the environment tests and benchmark: tiny projects built by ``pip wheel``.

Each project carries its own few-line PEP 517 backend (``backend-path``), so ``pip wheel
--no-index --no-build-isolation`` builds it with nothing from any index: no network at all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_BACKEND = '''
"""A minimal PEP 517 backend: one module, one wheel."""
import base64, hashlib, os, zipfile

NAME, VERSION, MODULE = {name!r}, {version!r}, {module!r}
SOURCE = {source!r}
REQUIRES = {requires!r}
WHEEL = "Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{{path}},sha256={{digest}},{{len(data)}}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = NAME.replace("-", "_")
    info = f"{{dist}}-{{VERSION}}.dist-info"
    metadata = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
    metadata += "".join(f"Requires-Dist: {{r}}\\n" for r in REQUIRES)
    files = {{
        f"{{MODULE}}.py": SOURCE.encode(),
        f"{{info}}/METADATA": metadata.encode(),
        f"{{info}}/WHEEL": WHEEL.encode(),
    }}
    record = [_record_line(path, data) for path, data in files.items()] + [f"{{info}}/RECORD,,"]
    files[f"{{info}}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = f"{{dist}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return name
'''


def build_wheel(
    wheelhouse: Path,
    name: str,
    version: str,
    source: str,
    requires: tuple[str, ...] = (),
) -> Path:
    """Write project ``name`` ``version`` (module ``name`` with ``source``) and ``pip wheel``
    it into ``wheelhouse``; the wheel's path."""
    module = name.replace("-", "_")
    project = wheelhouse.parent / "projects" / f"{name}-{version}"
    project.mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = []
            build-backend = "tiny_backend"
            backend-path = ["."]
            """
        )
    )
    backend = _BACKEND.format(
        name=name, version=version, module=module, source=source, requires=list(requires)
    )
    (project / "tiny_backend.py").write_text(backend)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-w",
            str(wheelhouse),
            str(project),
        ],
        check=True,
        capture_output=True,
    )
    return wheelhouse / f"{module}-{version}-py3-none-any.whl"
