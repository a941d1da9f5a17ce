import pytest

from strokeagent.backends import forget_backends, load_backend
from strokeagent.errors import PolicyError


class Recorder:
    """A backend kind that remembers its options."""

    built = 0

    def __init__(self, model: str, size: int = 1) -> None:
        Recorder.built += 1
        self.model, self.size = model, size


def write(path, text):
    path.write_text(text)
    return path


def test_a_description_is_built_once_and_relative_paths_follow_its_file(tmp_path, monkeypatch):
    forget_backends()
    (tmp_path / "weights").mkdir()
    desc = write(
        tmp_path / "b.toml", 'kind = "test_backends_registry:Recorder"\nmodel = "./weights"\nsize = 3\n'
    )
    monkeypatch.chdir("/")
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    before = Recorder.built
    a = load_backend(desc)
    b = load_backend(desc)
    assert a is b and Recorder.built == before + 1
    assert a.model == str((tmp_path / "weights").resolve()) and a.size == 3
    forget_backends()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "x"\n', "missing 'kind'"),
        ('kind = "nonesuch"\n', "unknown backend kind 'nonesuch'"),
        (
            'kind = "test_backends_registry:Recorder"\ncolour = 1\n',
            "bad options for test_backends_registry:Recorder",
        ),
        ("kind = \n", "not valid TOML"),
    ],
)
def test_bad_descriptions_are_one_clear_line(tmp_path, monkeypatch, text, message):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    with pytest.raises(PolicyError, match=message):
        load_backend(write(tmp_path / "bad.toml", text))


def test_a_missing_description_names_where_it_looked(tmp_path):
    with pytest.raises(PolicyError, match="no backend description 'nowhere.toml'"):
        load_backend("nowhere.toml")


@pytest.mark.parametrize("registry_name", ["STAGE_KINDS", "BACKEND_KINDS", "CRITIC_KINDS"])
def test_every_built_in_kind_resolves_without_importing_torch(registry_name):
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"from strokeagent.core.registry import {registry_name} as r\n"
        "for kind in r.builtins:\n"
        "    assert callable(r.factory(kind, where='test')), kind\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
