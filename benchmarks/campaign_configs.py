"""Fault campaign, configs and inputs: mutate every checked-in lab config and protocol
script, and probe the readers with hostile files.

    python benchmarks/campaign_configs.py [--quick]

Categories:

- ``config mutations``: every leaf of every file in ``lab_configs/`` and
  ``lab_configs/protocols/`` replaced by NaN, inf, 0, a negative number, 1e30, a value of
  the wrong type or 5,000 levels of nesting; an unknown key added to every mapping; every
  key of every mapping written twice. A lab config is loaded as ``dwlab config check``
  does, a script as ``dwlab protocols run --dry-run`` does (limits and duration checked).
- ``input probes``: binary files, deep nesting, sizes around and far over the bound,
  calibration paths that leave the config's folder, duplicate keys, alias bombs, files
  that are not regular files.

A case is *handled* when it loads and is valid, or ends in a dwlab error (a ConfigError
naming the file and the mutated dotted key); *failed* when an invalid input loads, a
valid one is refused, an error names another key, or an error quotes a refused file;
*tracebacks* when any other exception escapes. Which values are valid is this file's
oracle: NaN, inf, wrong types, unknown and duplicate keys never are; 0 only for the keys
in ZERO_OK, 1e30 only for those in HUGE_OK, a negative number for none of the keys in
these files. ``--quick`` samples the mutations with a fixed seed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dwlab.protocols.script import load_script

from dwlab.app.backends import check_arrays
from dwlab.app.commands.protocols import check_duty, dry_target, script_target
from dwlab.config import load_config
from dwlab.config.yaml_files import MAX_BYTES, MAX_DEPTH
from dwlab.core.errors import ConfigError, DwlabError

ROOT = Path(__file__).resolve().parents[1]
LEAF_KINDS = ("nan", "inf", "zero", "negative", "huge", "wrong_type", "deep")
ZERO_OK = {"seed", "latency_seconds", "series_resistance_ohms", "step_sigma_siemens",
           "disturb_reads", "temperature", "burn_in_epochs", "retries"}
"""Keys where 0 means something."""
ORDERED = {"times_seconds"}
"""Lists whose values must not decrease (retention times): 0 is valid where order stays."""
HUGE_OK = {"lr", "temperature", "burn_in_epochs"}
"""Algorithm settings where 1e30 is silly but safe (training diverges and says so)."""
SECRET = "s3cret-line-that-must-never-be-quoted"
QUICK_CASES = 400
SEED = 13

FAILURES: list[str] = []

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    file: str
    """Relative to lab_configs/."""
    path: Path_
    """Mapping keys (as strings) and list indices down to the mutated value or mapping."""
    kind: str
    value: Any = None
    """The new value of kind "value"."""


def dotted(path: Path_) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _norm(key: str | None) -> str:
    return re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", key or "")


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, list):
        return node[int(part)]
    return node[next(k for k in node if str(k) == part)]


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        data = _child(data, part)
    return data


def _walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    items = enumerate(node) if isinstance(node, list) else (
        ((str(k), v) for k, v in node.items()) if isinstance(node, dict) else ())
    for part, value in items:
        yield from _walk(value, (*path, part))


def files() -> list[str]:
    base = ROOT / "lab_configs"
    return sorted(str(p.relative_to(base)) for p in [*base.glob("*.yaml"),
                                                     *base.glob("protocols/*.yaml")])


def cases_of(file: str) -> list[Case]:
    data = yaml.safe_load((ROOT / "lab_configs" / file).read_text())
    out = []
    for path, node in _walk(data):
        if isinstance(node, dict):
            out.append(Case(file, path, "unknown_key"))
            out.extend(Case(file, (*path, str(k)), "duplicate_key") for k in node)
        elif not isinstance(node, list):
            out.extend(Case(file, path, kind) for kind in LEAF_KINDS)
    return out


def all_cases() -> list[Case]:
    return [c for f in files() for c in cases_of(f)]


def _leaf_value(kind: str, old: Any) -> Any:
    number = isinstance(old, (int, float)) and not isinstance(old, bool)
    return {"nan": float("nan"), "inf": float("inf"),
            "zero": 0.0 if isinstance(old, float) else 0,
            "negative": -abs(old) if number and old else -1,
            "huge": 1e30 if isinstance(old, float) else 10**30,
            "wrong_type": [1] if isinstance(old, str) else "abc",
            "deep": "__DEEP__"}[kind]


def mutate(case: Case) -> tuple[str, str | None]:
    """The mutated file's text, and the dotted key an error must name (None: the file)."""
    data = yaml.safe_load((ROOT / "lab_configs" / case.file).read_text())
    *parent_path, last = case.path or ("",)
    parent = _at(data, tuple(parent_path))
    key: str | None = dotted(case.path)
    if case.kind == "unknown_key":
        _at(data, case.path)["bogus_key"] = 1
        key = dotted((*case.path, "bogus_key"))
    elif case.kind == "duplicate_key":
        parent["__DUP__"] = _child(parent, last)
    else:
        real = last if isinstance(parent, list) else next(k for k in parent if str(k) == last)
        new = case.value if case.kind == "value" else _leaf_value(case.kind, parent[real])
        parent[real] = new
        key = None if case.kind == "deep" else key
    text = yaml.safe_dump(data, sort_keys=False)
    if case.kind == "duplicate_key":
        text = text.replace("__DUP__:", f"{last}:", 1)
    return text.replace("__DEEP__", "[" * 5000 + "]" * 5000), key


def invalid(case: Case) -> bool | None:
    name = next((p for p in reversed(case.path) if isinstance(p, str)), "")
    if case.kind == "zero":
        data = yaml.safe_load((ROOT / "lab_configs" / case.file).read_text())
        if name in ORDERED:  # valid while the list stays in order
            values = list(_at(data, case.path[:-1]))
            values[int(case.path[-1])] = 0
            return values != sorted(values)
        original = _at(data, case.path)
        unchanged = original == 0 and not isinstance(original, bool)  # 0 for 0
        return name not in ZERO_OK and not unchanged
    if case.kind == "huge":
        return name not in HUGE_OK
    return None if case.kind == "value" else True


def check_file(path: Path) -> None:
    """Load ``path`` as ``config check`` (a lab config) or a dry run (a script) would."""
    if path.parent.name == "protocols":
        script = load_script(path)
        loaded, shape, nominal = script_target(script)
        estimates = script.check(dry_target(script, loaded, shape, nominal))
        check_duty(script, loaded, estimates)
    else:
        check_arrays(load_config(path))


def judge(path: Path, should_load: bool | None, key: str | None, secret: str = SECRET
          ) -> tuple[str, str]:
    """(category, why) of loading ``path``: handled, failed or tracebacks (``should_load``
    None: either outcome is fine, as long as an error is a dwlab error naming the key)."""
    try:
        check_file(path)
    except DwlabError as exc:
        message = str(exc)
        if secret in message:
            return "failed", f"the error quotes a refused file: {message[:200]}"
        if isinstance(exc, ConfigError) and exc.file == str(path) and key is not None:
            named, leaf = _norm(exc.key), key.rpartition(".")[2].partition("[")[0]
            related = leaf in exc.reason  # a rule between two keys names one, says both
            if not (named == _norm(key) or _norm(key).startswith(named + "[") or related):
                return "failed", f"names key {exc.key!r}, not {key!r}: {message[:200]}"
        if str(path) not in message and isinstance(exc, ConfigError):
            return "failed", f"the error does not name {path}: {message[:200]}"
        if should_load is True:
            return "failed", f"a valid input was refused: {message[:200]}"
        return "handled", ""
    except Exception as exc:  # noqa: BLE001 - what the campaign counts
        return "tracebacks", f"{type(exc).__name__}: {str(exc)[:200]}"
    if should_load is False:
        return "failed", "loads although invalid"
    return "handled", ""


def workspace(tmp: Path) -> Path:
    """A copy of lab_configs/ (relative paths in configs and scripts keep working)."""
    return Path(shutil.copytree(ROOT / "lab_configs", tmp / "lab_configs"))


def run_case(case: Case, work: Path) -> tuple[str, str]:
    text, key = mutate(case)
    source = work / case.file
    path = source.with_name(f"{source.stem}-mutant.yaml")
    path.write_text(text)
    try:
        bad = invalid(case)
        return judge(path, None if bad is None else not bad, key)
    finally:
        path.unlink()


# ---- input probes -------------------------------------------------------------------------

Probe = tuple[str, Callable[[Path], Path], bool]
"""(name, write the probe into the workspace and return the file to load, should it load)."""


def _writer(name: str, content: str | bytes | Callable[[], str | bytes]) -> Callable[[Path], Path]:
    def write(work: Path) -> Path:
        path = work / name
        value = content() if callable(content) else content
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value)
        return path
    return write


def _sparse(name: str, size: int) -> Callable[[Path], Path]:
    def write(work: Path) -> Path:
        path = work / name
        with path.open("wb") as f:
            f.truncate(size)
        return path
    return write


def _calibration(index: int, target: str, should_load: bool, where: str = "arrays") -> Probe:
    twin = f"{{preset: continuous_dw, calibration: '{target}'}}"
    if where == "arrays":
        text = f"arrays:\n  main: {{backend: twin, twin: {twin}}}\n"
    else:
        vl = (ROOT / "lab_configs" / "virtual_lab.yaml").read_text()
        text = vl.replace("twin: {preset: continuous_dw}\n  latency", f"twin: {twin}\n  latency")
    return f"calibration {where} -> {target}", _writer(f"cal-{index}.yaml", text), should_load


def _nested(depth: int, mapping: bool) -> str:
    value = "{a: " * depth + "1" + "}" * depth if mapping else "[" * depth + "]" * depth
    return f"name: x\ntraining: {{data_dir: {value}}}\n"


def probes(rng: random.Random) -> list[Probe]:
    default = (ROOT / "lab_configs" / "default.yaml").read_text()
    out: list[Probe] = []
    for i in range(12):  # binary: random bytes, some with a UTF-8 prefix
        blob = bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096])))
        out.append((f"binary {i}", _writer(f"binary-{i}.yaml", b"name: x\n" * (i % 2) + blob
                                           + b"\xff"), False))
    for depth in (MAX_DEPTH - 2, MAX_DEPTH + 1, 1000, 5000, 100_000):
        for mapping in (False, True):
            out.append((f"nesting {depth} {'maps' if mapping else 'lists'}",
                        _writer(f"deep-{depth}-{mapping}.yaml", _nested(depth, mapping)), False))
    pad = MAX_BYTES - len(default.encode()) - 10
    out.append(("size just under the bound", _writer("big-ok.yaml",
                                                     default + "#" * pad + "\n"), True))
    for size in (MAX_BYTES + 1, 10 * MAX_BYTES, 100 * MAX_BYTES, 10**10):
        out.append((f"size {size} bytes", _sparse(f"big-{size}.yaml", size), False))
    out.append(("100 MB string value", _sparse("string.yaml", 100 * 10**6), False))
    out.append(("not a regular file (/dev/zero)", lambda work: Path("/dev/zero"), False))
    out.append(("a folder", lambda work: work, False))
    out.append(("missing file", lambda work: work / "absent.yaml", False))
    out.append(("empty file (all defaults)", _writer("empty.yaml", ""), True))
    out.append(("top level is a list", _writer("list.yaml", "- 1\n- 2\n"), False))
    out.append(("top level is a secret line", _writer("line.yaml", f"{SECRET}\n"), False))
    for target, ok in [("calibrations/default_twin_8x8.yaml", True),
                       ("../../../../etc/passwd", False), ("/etc/passwd", False),
                       ("calibrations/../../outside/secret.yaml", False),
                       ("calibrations/link-out.yaml", False), ("~/secret.yaml", False),
                       ("../outside/secret.yaml", False)]:
        out.append(_calibration(len(out), target, ok))
        out.append(_calibration(len(out), target, ok, where="virtual_lab"))
    dup = [("top level", "name: a\nseed: 1\nname: b\n"),
           ("nested", "controller:\n  lr: 0.1\n  lr: 0.2\n"),
           ("flow style", "controller: {lr: 0.1, lr: 0.2}\n"),
           ("in a list item", "mapping:\n  - {match: a, array: main, match: b}\n"),
           ("in a script step", "name: s\nlab_config: ../default.yaml\nsteps:\n"
            "  - protocol: read_noise\n    protocol: endurance\n")]
    for name, text in dup:
        folder = "protocols/" if "script" in name else ""
        out.append((f"duplicate key, {name}", _writer(f"{folder}dup-{len(out)}.yaml", text),
                    False))
    out.append(("merge key (not a duplicate)",
                _writer("merge.yaml", "base: &b {lr: 0.1}\ncontroller:\n  <<: *b\n"), False))
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    out.append(("alias bomb", _writer("bomb.yaml", bomb), False))
    out.append(("alias bomb in a script", _writer("protocols/bomb.yaml", bomb), False))
    out.append(("binary script", _writer("protocols/binary.yaml", b"\xff\xfe\x00steps"), False))
    out.append(("deep script", _writer("protocols/deep.yaml", _nested(5000, False)), False))
    return out


def _outside(work: Path) -> None:
    """A secret file beside the workspace, and a link to it from inside."""
    outside = work.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.yaml").write_text(f"{SECRET}\n")
    link = work / "calibrations" / "link-out.yaml"
    if not link.exists():
        os.symlink(outside / "secret.yaml", link)


# ---- the campaign -------------------------------------------------------------------------


def _count(table: dict[str, dict[str, int]], category: str, result: tuple[str, str],
           name: str) -> None:
    row = table.setdefault(category, {"tried": 0, "handled": 0, "failed": 0, "tracebacks": 0})
    outcome, why = result
    row["tried"] += 1
    row[outcome] += 1
    if outcome != "handled":
        FAILURES.append(f"{category}: {name}: {outcome}: {why}")


def run(quick: bool = False) -> dict[str, dict[str, int]]:
    FAILURES.clear()
    rng = random.Random(SEED)
    cases = all_cases()
    if quick:
        cases = rng.sample(cases, QUICK_CASES)
    table: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = workspace(Path(tmp))
        for case in cases:
            _count(table, "config mutations", run_case(case, work),
                   f"{case.file} {dotted(case.path)} {case.kind}")
        _outside(work)
        for name, write, should_load in probes(rng):
            path = write(work)
            _count(table, "input probes", judge(path, should_load, None), name)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} sampled mutations")
    args = ap.parse_args()
    start = time.perf_counter()
    table = run(quick=args.quick)
    from fault_campaign import print_tally

    print_tally(table)
    for line in FAILURES:
        print(f"  {line}")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
