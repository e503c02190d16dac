"""Hostile or broken input files end in one line naming the file, before anything is built from them.

YAML configs (alias bombs, deep nesting, oversized files, too many values), JSON classifier files
(deep nesting, Python's own RecursionError, oversized files) and manifests (oversized, a CSV field
over the csv module's limit): :mod:`audio_embeddings.safe_load` and its callers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_embeddings import safe_load
from audio_embeddings.cli import main
from audio_embeddings.corpus.discover import MANIFEST_MAX_BYTES, CorpusError, discover, read_manifest
from audio_embeddings.runner import classifier as classifier_module
from audio_embeddings.runner.classifier import ClassifierError, LinearClassifier, load_classifiers
from audio_embeddings.runner.config import CONFIG_MAX_BYTES, ConfigError, load_config
from audio_embeddings.safe_load import DocumentError, load_json_file, load_yaml_file, parse_json, parse_yaml
from audio_embeddings.scripts import EMBED
from conftest import PYTHON_DIR

yaml = pytest.importorskip("yaml")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion laughs as a classifier's ``tags``: ``levels`` anchors each listing the previous one
    ``width`` times (9 x 9: 9**9 strings; before aliases were refused, the config check's message
    built the repr of them all and ended in a MemoryError)."""
    lines = ["classifiers:", "  - name: c", "    model: c.json",
             "    tags: [&a [" + ", ".join(['"lol"'] * width) + "],"]
    previous = "a"
    for i in range(1, levels - 1):
        name = chr(ord("a") + i)
        lines.append(f"      &{name} [" + ", ".join([f"*{previous}"] * width) + "],")
        previous = name
    lines.append("      [" + ", ".join([f"*{previous}"] * width) + "]]")
    return "\n".join(lines) + "\n"


def sparse_file(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space (its size is what the readers check first)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def one_line(message: str, path: Path) -> None:
    assert "\n" not in message and str(path) in message, message


@pytest.fixture(scope="module")
def classifier_json() -> dict:
    rng = np.random.default_rng(0)
    clf = LinearClassifier(rng.standard_normal((8, 2)).astype(np.float32), np.zeros(2, np.float32), ("a", "b"),
                           "birdnet", {}, {})
    return clf.to_json_dict()


# -- YAML: the readers ------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_at_its_first_alias(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    t0 = time.perf_counter()
    with pytest.raises(DocumentError) as info:
        load_yaml_file(path)
    assert time.perf_counter() - t0 < 1.0
    message = str(info.value)
    one_line(message, path)
    assert message.startswith(f"{path}: line 5: an alias (*a)") and "not accepted" in message


def test_a_single_alias_is_refused_too(tmp_path):
    """Configs never need one; refusing every alias is simpler than bounding what they expand to."""
    path = tmp_path / "one.yaml"
    path.write_text("classifiers:\n  - name: x\n    tags: &t [a, b]\n  - name: y\n    tags: *t\n")
    with pytest.raises(DocumentError, match=r"one\.yaml: line 5: an alias \(\*t\)"):
        load_yaml_file(path)
    path.write_text("base: &b {seed: 1}\ntraining:\n  <<: *b\n")  # a merge key is an alias too
    with pytest.raises(DocumentError, match=r"line 3: an alias \(\*b\)"):
        load_yaml_file(path)
    assert parse_yaml("a: &anchor [1, 2]\n") == {"a": [1, 2]}  # an anchor alone expands nothing


@pytest.mark.parametrize("text", [
    "a: " + "[" * 51 + "]" * 51 + "\n",  # flow lists
    "".join(f"{'  ' * i}k{i}:\n" for i in range(51)) + "  " * 51 + "v\n",  # block mappings
    "a: " + "[" * 200_000 + "\n",  # far too deep (and unterminated): refused at level 51, no RecursionError
])
def test_deep_nesting_is_refused(text, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(DocumentError) as info:
        load_yaml_file(path, max_depth=50)
    assert time.perf_counter() - t0 < 2.0
    one_line(str(info.value), path)
    assert "nested deeper than 50 levels" in str(info.value)


def test_fifty_levels_are_fine():
    assert parse_yaml("a: " + "[" * 49 + "1" + "]" * 49, max_depth=50) == {"a": eval("[" * 49 + "1" + "]" * 49)}


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path):
    path = sparse_file(tmp_path / "big.yaml", CONFIG_MAX_BYTES + 1, b"model: birdnet\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.perf_counter() - t0 < 1.0
    assert str(info.value) == f"{path}: too large for a config ({CONFIG_MAX_BYTES + 1} bytes; at most 16 MiB)"
    small = tmp_path / "small.yaml"
    small.write_text("model: birdnet\n" + "#" * 100 + "\n")
    with pytest.raises(DocumentError, match=r"too large for a YAML file \(116 bytes; at most 64 bytes\)"):
        load_yaml_file(small, max_bytes=64)


def test_a_device_is_read_no_further_than_the_bound(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ConfigError, match=r"^/dev/zero: too large for a config \(more than 16 MiB\)$"):
        load_config("/dev/zero")


def test_too_many_values_are_refused_while_reading():
    text = "tags: [" + ", ".join(["a"] * 2000) + "]\n"
    with pytest.raises(DocumentError, match=r"^c\.yml: line 1: more than 1000 values$"):
        parse_yaml(text, max_nodes=1000, source="c.yml")
    assert len(parse_yaml(text)["tags"]) == 2000


def test_a_valid_config_loads_as_safe_load_reads_it(tmp_path):
    text = ("model: birdnet\nhop_length_seconds: 1.5\n"
            "classifiers:\n  - name: one\n    tags: [low, high]\n    model: |\n      eyJhIjogMX0=\n"
            "training:\n  holdout_fraction: 0.25\n  seed: 3\n  negative_label: noise\n"
            "notes: {when: 2024-01-02, ratio: .5, on: yes, none: ~, text: 'a: b'}\n")
    path = tmp_path / "config.yml"
    path.write_text(text)
    assert load_yaml_file(path) == yaml.safe_load(text)
    assert load_yaml_file(tmp_path / "config.yml", unique_keys=False) == yaml.safe_load(text)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert load_yaml_file(empty) is None


def test_other_yaml_failures_are_one_line(tmp_path):
    path = tmp_path / "c.yml"
    cases = {
        "a: 1\na: 2\n": "line 2: key 'a' is given twice",
        "a: [1\n": "not valid YAML: line 2:",
        "a: !!python/object:os.system {}\n": "not valid YAML: line 1: could not determine a constructor",
        "a: " + "1" * 5000 + "\n": "not valid YAML: Exceeds the limit (4300 digits)",
        "--- 1\n--- 2\n": "not valid YAML: line 2: but found another document",
    }
    for text, expected in cases.items():
        path.write_text(text)
        with pytest.raises(DocumentError) as info:
            load_yaml_file(path)
        one_line(str(info.value), path)
        assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(DocumentError, match="not UTF-8 text"):
        load_yaml_file(path)
    with pytest.raises(DocumentError, match=r"nope\.yml: file not found$"):
        load_yaml_file(tmp_path / "nope.yml")


# -- YAML: through the config and the command line ---------------------------------------------


def test_load_config_refuses_the_bomb_in_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    one_line(str(info.value), path)
    assert "alias" in str(info.value)


@pytest.mark.slow
def test_the_alias_bomb_through_perch_runner_is_one_line_and_fast(tmp_path):
    """The real command line: exit 2, one line naming the file, no traceback, no model loaded, seconds."""
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb())
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(48000, np.float32), 48000)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(PYTHON_DIR / "perch_runner.py"), "generate", "--config", str(config),
                           str(clip), str(out)], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 10.0, f"{elapsed:.1f} s"
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {config}: line 5: an alias (*a)")
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert not out.exists()  # nothing ran


def test_a_deep_config_through_the_runner_cli_is_one_line(tmp_path, capsys):
    from audio_embeddings.runner.cli import main as runner_main

    config = tmp_path / "deep.yml"
    config.write_text("model: " + "[" * 5000 + "\n")
    assert runner_main(["classify", "-c", str(config), str(tmp_path / "x.wav"), str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {config}: line 1: nested deeper than 50 levels of mappings and lists"]


# -- JSON: classifier files ------------------------------------------------------------------


def test_json_readers_bound_depth_and_parse_good_files(tmp_path, classifier_json):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(classifier_json))
    assert load_json_file(good) == classifier_json
    deep = "[" * 60 + "]" * 60
    with pytest.raises(DocumentError, match=r"^x\.json: nested deeper than 50 levels of objects and arrays$"):
        parse_json(deep, source="x.json")
    assert parse_json("[" * 50 + "]" * 50) == eval("[" * 50 + "]" * 50)
    with pytest.raises(DocumentError, match=r"^nested deeper than 50 levels"):  # Python's RecursionError
        parse_json("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DocumentError, match=r"^more than 10 values$"):
        parse_json("[" + "1," * 20 + "1]", max_values=10)
    with pytest.raises(DocumentError, match=r"^not JSON \(Exceeds the limit"):
        parse_json("1" * 5000)


def test_a_deep_classifier_file_is_one_line(tmp_path, classifier_json):
    path = tmp_path / "deep.json"
    payload = dict(classifier_json, model_config={"x": json.loads("[" * 80 + "]" * 80)})
    path.write_text(json.dumps(payload))
    for load in (LinearClassifier.load, load_classifiers):
        with pytest.raises(ClassifierError) as info:
            load(path)
        assert str(info.value) == f"{path}: nested deeper than 50 levels of objects and arrays"
    recursion = tmp_path / "recursion.json"
    recursion.write_text("{\"recognizers\": " + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ClassifierError, match="nested deeper than 50 levels"):
        load_classifiers(recursion)


def test_a_deep_classifier_named_by_a_config_is_one_line(tmp_path, classifier_json):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    config = tmp_path / "c.yml"
    config.write_text(f"classifiers:\n  - name: a\n    model: {deep}\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    one_line(str(info.value), config)
    assert str(info.value) == f"{config}: classifiers[0].model: {deep}: nested deeper than 50 levels of objects " \
                              "and arrays"
    config.write_text(f"recognizers: {deep}\n")
    with pytest.raises(ConfigError, match=r"recognizers: .*deep\.json: nested deeper than 50 levels"):
        load_config(config)
    import base64

    inline = base64.b64encode(("[" * 100 + "]" * 100).encode()).decode()
    config.write_text(f"classifiers:\n  - name: a\n    model: '{inline}'\n")
    with pytest.raises(ConfigError, match=r"classifiers\[0\]\.model: decoded base64: nested deeper than 50"):
        load_config(config)


def test_an_oversized_classifier_file_is_refused_unread(tmp_path, monkeypatch):
    path = sparse_file(tmp_path / "huge.json", classifier_module.CLASSIFIER_MAX_BYTES + 1, b"{")
    t0 = time.perf_counter()
    with pytest.raises(ClassifierError, match=r"huge\.json: too large for a classifier file \(268435457 bytes; "
                                              r"at most 256 MiB\)$"):
        LinearClassifier.load(path)
    assert time.perf_counter() - t0 < 1.0


# -- manifests ------------------------------------------------------------------------------


def test_a_large_legitimate_manifest_is_read(tmp_path):
    """100 000 lines (some 5 MB) are far below the bound: a manifest of millions of paths is normal."""
    assert MANIFEST_MAX_BYTES >= 1 << 30
    manifest = tmp_path / "list.txt"
    manifest.write_text("".join(f"part_{i // 1000:03d}/clip_{i:06d}.wav\n" for i in range(100_000)))
    t0 = time.perf_counter()
    paths = read_manifest(manifest)
    assert len(paths) == 100_000 and paths[-1] == tmp_path / "part_099" / "clip_099999.wav"
    assert time.perf_counter() - t0 < 10.0


def test_an_oversized_manifest_is_refused_unread(tmp_path):
    manifest = sparse_file(tmp_path / "list.txt", MANIFEST_MAX_BYTES + 1, b"a.wav\n")
    t0 = time.perf_counter()
    with pytest.raises(CorpusError) as info:
        discover([str(manifest)])
    assert time.perf_counter() - t0 < 1.0
    assert str(info.value) == f"{manifest}: too large for a manifest ({MANIFEST_MAX_BYTES + 1} bytes; at most 1 GiB)"


def test_an_oversized_manifest_through_the_cli_is_one_line(tmp_path, capsys):
    manifest = sparse_file(tmp_path / "list.txt", MANIFEST_MAX_BYTES + 1, b"a.wav\n")
    status = main(EMBED, [str(manifest), "--model", "ge2e", "--output-dir", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and f"{manifest}: too large for a manifest" in err[0]


def test_a_csv_manifest_field_over_the_csv_limit_is_one_line(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path\nok.wav\n" + "x" * 200_000 + ".wav\n")
    with pytest.raises(CorpusError) as info:
        read_manifest(manifest)
    one_line(str(info.value), manifest)
    assert str(info.value).startswith(f"{manifest}: line 3: not a readable CSV manifest (field larger than")


def test_the_leaf_module_imports_nothing_of_the_package():
    code = ("import sys; import audio_embeddings.safe_load; "
            "print(sorted(m for m in sys.modules if m.startswith('audio_embeddings.') "
            "and m != 'audio_embeddings.safe_load'), 'yaml' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split() == ["[]", "False"], proc.stderr
