"""lmgui as a user installs it: the sdist, the wheel built from it, installed (not editable) into a
fresh environment and run from outside the checkout, with every icon the real SVG.

Offline and quick: the build uses this environment's setuptools without isolation, and the new
environment reuses this one's installed dependencies through a .pth file of plain paths (a plain
path line runs none of the .pth files there, so the checkout's editable lmgui stays out of it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon, QImage
from PySide6.QtWidgets import QToolBar

import lmgui
from lmgui.ui.icons import ICON_NAMES, state_icon
from lmgui.ui.tray import TrayState, icon_name
from tests.xdg import parse_exec, read_entry

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the installed layout tested is POSIX's")

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    prefix: Path

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def lmgui(self) -> Path:
        return self.prefix / "bin" / "lmgui"


def backend(hook: str, source: Path, out: Path) -> Path:
    """Run one PEP 517 hook of the project's build backend (setuptools) in ``source``."""
    code = f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))"
    p = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return out / p.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    floor = (77,)
    have = tuple(int(x) for x in metadata.version("setuptools").split(".")[:1])
    if have < floor:
        pytest.fail("setuptools is older than the test extra asks: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("build")
    # The sdist from a copy of the checkout (a build writes build/ and *.egg-info where it runs),
    # then the wheel from the unpacked sdist, as `python -m build` does: what the wheel carries,
    # the sdist carried.
    tree = tmp / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(".*", "*.egg-info", "build", "dist", "__pycache__"),
    )
    sdist = backend("build_sdist", tree, tmp)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    (source,) = (tmp / "unpacked").iterdir()
    return Built(sdist, backend("build_wheel", source, tmp))


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    env = Installed(tmp_path_factory.mktemp("env") / "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env.prefix)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(env.python), "--disable-pip-version-check"]
    p = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", str(built.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    # Only after installing: pip then never sees the checkout's lmgui.
    site = subprocess.run(
        [str(env.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(site) / "_lmgui_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return env


@pytest.fixture
def elsewhere(tmp_path: Path) -> dict[str, str]:
    """An environment for a run from outside the checkout, with its own user folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return env


def run_in(tmp_path: Path, env: dict[str, str], *argv: str | Path) -> str:
    p = subprocess.run(
        [str(a) for a in argv],
        cwd=tmp_path,  # not the checkout: nothing may be found relative to it
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


# ----------------------------------------------------------------------------- what ships


def test_the_sdist_and_the_wheel_carry_the_icons_the_license_and_py_typed(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    in_sdist = {n.removeprefix(top + "/") for n in names}
    with zipfile.ZipFile(built.wheel) as wheel:
        in_wheel = set(wheel.namelist())
        shipped = {n: wheel.read(n) for n in in_wheel if n.startswith("lmgui/resources/")}
        info = top + ".dist-info"
        meta = wheel.read(f"{info}/METADATA").decode()
    svgs = {p.name: p.read_bytes() for p in ICONS.glob("*.svg")}
    assert {f"resources/icons/{n}" for n in svgs} | {"LICENSE", "lmgui/py.typed"} <= in_sdist
    assert {
        f"lmgui/resources/icons/{n}": data for n, data in svgs.items()
    }.items() <= shipped.items()  # byte for byte
    desktop = (ROOT / "resources" / "lmgui.desktop").read_bytes()
    assert shipped["lmgui/resources/lmgui.desktop"] == desktop
    assert {"lmgui/py.typed", f"{info}/licenses/LICENSE"} <= in_wheel
    # Every module of the checkout (a subpackage missing from pyproject.toml's list fails here).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lmgui").rglob("*.py")}
    assert modules <= in_wheel
    assert f"\nVersion: {lmgui.__version__}\n" in meta and "\nLicense-Expression: MIT\n" in meta


def test_every_icon_lmgui_shows_is_shipped(qapp: object) -> None:
    assert sorted(ICON_NAMES) == sorted(p.stem for p in ICONS.glob("*.svg"))
    from lmgui.core.poller import ConnectionState

    tray = {icon_name(TrayState("s", s)) for s in ConnectionState}
    tray.add(icon_name(TrayState("s", ConnectionState.CONNECTED, loading=True)))
    assert tray <= set(ICON_NAMES)
    with pytest.raises(FileNotFoundError, match="lmgui is installed without its file"):
        state_icon("no-such-icon")


# ----------------------------------------------------------------------------- the installed app

DRAW = """
import json, sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
import lmgui
from lmgui.ui.icons import ICON_NAMES, icon_path, state_icon
for name in ICON_NAMES:
    state_icon(name).pixmap(32, 32).save(str(Path(sys.argv[1]) / f"{name}.png"))
print(json.dumps({"lmgui": lmgui.__file__, "icons": str(icon_path("app").parent)}))
"""


def checkout_drawing(name: str, size: QSize, mode: QIcon.Mode = QIcon.Mode.Normal) -> QImage:
    """The checkout's SVG as Qt draws it, straight from resources/."""
    image = QIcon(str(ICONS / f"{name}.svg")).pixmap(size, mode).toImage()
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def find(icon: QImage, shot: QImage, rows: int) -> bool:
    """Whether ``icon``'s opaque pixels appear, exactly, somewhere in the top ``rows`` of
    ``shot`` (a toolbar button paints the icon over its own background)."""
    opaque = [
        (x, y, icon.pixel(x, y))
        for y in range(icon.height())
        for x in range(icon.width())
        if icon.pixel(x, y) >> 24 == 0xFF
    ]
    assert len(opaque) > 10
    (x0, y0, first), rest = opaque[0], opaque[1:]
    for top in range(min(rows, shot.height()) - icon.height()):
        for left in range(shot.width() - icon.width()):
            if shot.pixel(left + x0, top + y0) == first and all(
                shot.pixel(left + x, top + y) == c for x, y, c in rest
            ):
                return True
    return False


def test_the_installed_app_shows_the_real_icons(
    installed: Installed, elsewhere: dict[str, str], tmp_path: Path, qapp: object
) -> None:
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    seen = json.loads(run_in(tmp_path, elsewhere, installed.python, "-c", DRAW, drawn))
    # The installed copy, not the checkout: the wheel alone must carry the icons.
    assert Path(seen["lmgui"]).is_relative_to(installed.prefix)
    assert Path(seen["icons"]).is_relative_to(installed.prefix)
    for name in ICON_NAMES:
        shown = QImage(str(drawn / f"{name}.png")).convertToFormat(QImage.Format.Format_ARGB32)
        assert shown == checkout_drawing(name, QSize(32, 32)), name

    shot = tmp_path / "window.png"
    run_in(tmp_path, elsewhere, installed.lmgui, "--demo", "--screenshot", shot)
    window = QImage(str(shot)).convertToFormat(QImage.Format.Format_ARGB32)
    size = QToolBar().iconSize()
    toolbar = 80  # the menu bar and the toolbar
    assert find(checkout_drawing("refresh", size), window, toolbar)
    assert find(checkout_drawing("load", size), window, toolbar)
    # Nothing is selected in the demo's first screen, so Unload is drawn disabled.
    assert find(checkout_drawing("unload", size, QIcon.Mode.Disabled), window, toolbar)


def test_the_installed_app_has_one_version(
    installed: Installed, elsewhere: dict[str, str], tmp_path: Path
) -> None:
    out = run_in(tmp_path, elsewhere, installed.lmgui, "--version")
    assert out == f"lmgui {lmgui.__version__}\n"


def test_the_installed_apps_launcher_runs_it(
    installed: Installed, elsewhere: dict[str, str], tmp_path: Path
) -> None:
    data = Path(elsewhere["XDG_DATA_HOME"])
    launcher = data / "applications" / "lmgui.desktop"
    icon = data / "icons" / "hicolor" / "scalable" / "apps" / "lmgui.svg"
    run_in(tmp_path, elsewhere, installed.lmgui, "desktop-entry", "install")
    keys = read_entry(launcher)
    command = parse_exec(keys["Exec"])
    assert command == [str(installed.lmgui.resolve())] and keys["TryExec"] == command[0]
    assert keys["Icon"] == "lmgui" and icon.read_bytes() == (ICONS / "app.svg").read_bytes()
    # What the desktop's menu runs: this installation's lmgui, with no PATH to find it.
    bare = {k: v for k, v in elsewhere.items() if k != "PATH"}
    assert run_in(tmp_path, bare, *command, "--version") == f"lmgui {lmgui.__version__}\n"
    run_in(tmp_path, elsewhere, installed.lmgui, "desktop-entry", "remove")
    assert not launcher.exists() and not icon.exists()
