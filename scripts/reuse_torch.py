"""Link the main environment's torch (and what it needs) into the legacy environment.

    python scripts/reuse_torch.py TARGET_SITE_PACKAGES TORCH_SPEC TARGET_PYTHON

Run by scripts/bootstrap_legacy.sh with the main environment's Python. Hard links are
safe: pip and Python never write into an installed file (pip unlinks before it writes,
Python renames its .pyc into place), so neither environment changes the other's files.
Each linked distribution gets its own RECORD (pip uninstalls by it) and console scripts
for the target Python. Nothing stays linked unless every piece checks out (same Python
ABI, the torch version asked for, every requirement met, ``import torch`` works there):
on any failure what was linked is removed and the exit status is 1, and the caller
installs torch with pip as usual.
"""
import errno
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import sysconfig

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:   # pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

target, spec, python = sys.argv[1:4]
say = lambda text: print(f"sparkae legacy: {text}", file=sys.stderr)  # noqa: E731
probe = "import sys, sysconfig; print(repr((sysconfig.get_config_var('SOABI'), " \
        "sys.platform, sys.version_info[:2])))"
here = (sysconfig.get_config_var("SOABI"), sys.platform, sys.version_info[:2])
there = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                       check=True).stdout.strip()
if repr(here) != there:
    say(f"not reusing the main environment's torch: its Python is {here}, this one {there}")
    sys.exit(1)
site = sysconfig.get_paths()["purelib"]
dists = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions(path=[site])}
present = {canonicalize_name(d.metadata["Name"]) for d in md.distributions(path=[target])}
want = Requirement(spec)
torch = dists.get("torch")
if canonicalize_name(want.name) != "torch" or torch is None or \
        not want.specifier.contains(torch.version, prereleases=True):
    say(f"not reusing the main environment's torch: it has "
        f"{torch.version if torch else 'none'}, {spec} is asked for")
    sys.exit(1)
# torch and what it needs (with the extras asked for), as the main environment has them;
# a distribution this environment has already (pip, setuptools) is left to pip
chosen, done, todo = {}, set(), [("torch", frozenset())]
while todo:
    name, extras = todo.pop()
    if (name, extras) in done or name in present:
        continue
    done.add((name, extras))
    dist = dists.get(name)
    if dist is None:
        say(f"not reusing the main environment's torch: it lacks {name}")
        sys.exit(1)
    chosen[name] = dist
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            continue
        dep = canonicalize_name(req.name)
        have = dists.get(dep)
        if dep not in present and (have is None or not req.specifier.contains(
                have.version, prereleases=True)):
            say(f"not reusing the main environment's torch: {name} needs {req}")
            sys.exit(1)
        todo.append((dep, frozenset(req.extras)))
made, dirs = [], []


def place(path):
    """Create path's missing folders (remembered for an undo); refuse an existing file."""
    if os.path.lexists(path):
        raise FileExistsError(path)
    missing, folder = [], os.path.dirname(path)
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        os.mkdir(folder)
        dirs.append(folder)


bindir = os.path.dirname(python)
try:
    for name, dist in sorted(chosen.items()):
        record, lines = None, []
        for f in dist.files or []:
            rel, src = str(f), str(dist.locate_file(f))
            if rel.startswith(".."):     # scripts, man pages: console scripts are made below
                continue
            if os.path.basename(rel) == "RECORD" and rel.endswith(".dist-info/RECORD"):
                record = rel
                continue
            if not os.path.isfile(src):  # listed but absent (a .pyc never written)
                continue
            dst = os.path.join(target, rel)
            place(dst)
            try:
                os.link(src, dst)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copy2(src, dst)
            made.append(dst)
            digest = f"{f.hash.mode}={f.hash.value}" if f.hash else ""
            lines.append(f"{rel},{digest},{f.size or ''}")
        for ep in dist.entry_points.select(group="console_scripts"):
            script = os.path.join(bindir, ep.name)
            place(script)
            module, _, attr = ep.value.split("[")[0].strip().partition(":")
            with open(script, "w") as out:
                out.write(f"#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
                          f"from {module} import {attr.split('.')[0]}\n"
                          "if __name__ == '__main__':\n"
                          "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                          f"    sys.exit({attr}())\n")
            os.chmod(script, 0o755)
            made.append(script)
            lines.append(f"{os.path.relpath(script, target)},,")
        if record is None:
            raise RuntimeError(f"{name} has no RECORD")
        # this environment's own RECORD (pip uninstalls by it), a new file: no link
        dst = os.path.join(target, record)
        place(dst)
        with open(dst, "w") as out:
            out.write("\n".join(lines + [f"{record},,"]) + "\n")
        made.append(dst)
    check = subprocess.run([python, "-c", "import importlib.metadata as m, torch; "
                            "print(m.version('torch'), torch.__file__)"],
                           capture_output=True, text=True)
    if check.returncode != 0 or check.stdout.split()[:1] != [torch.version] or \
            not check.stdout.split()[1].startswith(os.path.join(target, "torch")):
        raise RuntimeError(f"import torch there: {(check.stdout + check.stderr)[-500:]}")
except Exception as exc:  # noqa: BLE001 - undo, then pip installs torch as usual
    for path in reversed(made):
        os.unlink(path)
    for folder in reversed(dirs):
        shutil.rmtree(folder, ignore_errors=True)
    say(f"not reusing the main environment's torch ({type(exc).__name__}: {exc})")
    sys.exit(1)
say(f"torch {torch.version} and {len(chosen) - 1} distributions it needs linked from {site}")
