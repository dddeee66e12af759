"""A small, offline kustomize renderer for the subset of kustomize v5 that deploy/k8s uses.

No kustomize build ships on PyPI, npm or Debian for Python 3.11 in a form a test can pin (PyPI's
``pykustomize`` needs Python >= 3.14; Debian's kubectl 1.20 embeds kustomize 2.0.3, which has no
components), so the tests render with this module and, where a real ``kustomize`` or ``kubectl``
binary is on PATH, check it gives the same objects (``test_render.py``).

What it implements, in kustomize's order (resources, components, generators, then the
transformers: patches, namespace, labels, replicas, images):

- ``resources``: files (multi-document YAML) and directories holding a kustomization.
- ``components``: ``kind: Component`` directories, applied to the accumulated resources.
- ``configMapGenerator`` with ``files``/``literals`` and ``disableNameSuffixHash: true`` only.
- ``patches``: strategic-merge patches (with or without ``target``) and JSON 6902 patches
  (``add``, ``remove``, ``replace``, ``test``); targets by group, version, kind, name (regex),
  namespace and equality label selectors. Strategic merge follows kustomize for the built-in
  list merge keys (containers/initContainers and volumes by name, env by name, volumeMounts by
  mountPath, container ports by containerPort, Service ports by port): patch elements first,
  in patch order, then the remaining elements of the original list.
- ``namespace`` (namespaced kinds; a Namespace object takes the namespace as its name),
  ``labels`` (``pairs`` on metadata.labels, no selectors, no templates), ``replicas``, ``images``.

Anything else (an unknown kustomization field, hash suffixes, ``$patch`` directives, ...) raises
:class:`KustomizeError` instead of being rendered wrongly.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "components",
        "namespace",
        "labels",
        "images",
        "replicas",
        "patches",
        "configMapGenerator",
    }
)
# Built-in kinds without a namespace (kustomize treats every other kind, CRs included, as
# namespaced).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "Node",
    }
)
REPLICA_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"})
# Groups of the built-in API: strategic merge knows their list merge keys.
BUILTIN_GROUPS = frozenset(
    {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}
)


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not implement, or is invalid."""


def build(directory: Path) -> list[Manifest]:
    """Render the kustomization in ``directory``, like ``kustomize build directory``."""
    resources = _build(directory.resolve(), expect_kind="Kustomization")
    _check_unique(resources)
    return resources


def resource_id(obj: Manifest) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


# --- accumulation ---------------------------------------------------------------------------


def _load_kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text())
            if not isinstance(data, dict):
                raise KustomizeError(f"{path}: not a mapping")
            unknown = set(data) - SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(
                    f"{path}: fields {sorted(unknown)} are not implemented by kustomize_lite"
                )
            return data
    raise KustomizeError(f"{directory}: no kustomization file")


def _build(directory: Path, *, expect_kind: str) -> list[Manifest]:
    kustomization = _load_kustomization(directory)
    kind = kustomization.get("kind", "Kustomization")
    if kind != expect_kind:
        raise KustomizeError(f"{directory}: kind {kind!r}, expected {expect_kind!r}")
    resources: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        resources.extend(_load_resource(directory, entry))
    return _apply(directory, kustomization, resources)


def _apply(
    directory: Path, kustomization: dict[str, Any], resources: list[Manifest]
) -> list[Manifest]:
    """Components, generators and transformers of one kustomization, in kustomize's order."""
    for entry in kustomization.get("components", []):
        component_dir = _local_path(directory, entry)
        component = _load_kustomization(component_dir)
        if component.get("kind") != "Component":
            raise KustomizeError(f"{component_dir}: listed as a component but is not one")
        for res in component.get("resources", []):
            resources.extend(_load_resource(component_dir, res))
        resources = _apply(component_dir, component, resources)
    for generator in kustomization.get("configMapGenerator", []):
        resources.append(_generate_configmap(directory, generator))
    for patch in kustomization.get("patches", []):
        resources = _apply_patch(directory, patch, resources)
    if "namespace" in kustomization:
        _set_namespace(resources, str(kustomization["namespace"]))
    for label in kustomization.get("labels", []):
        _add_labels(resources, label)
    for replica in kustomization.get("replicas", []):
        _set_replicas(resources, replica)
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    return resources


def _local_path(directory: Path, entry: str) -> Path:
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise KustomizeError(f"{directory}: remote resource {entry!r} is not supported")
    if Path(entry).is_absolute():
        raise KustomizeError(f"{directory}: absolute path {entry!r} (kustomize refuses these)")
    return (directory / entry).resolve()


def _load_resource(directory: Path, entry: str) -> list[Manifest]:
    path = _local_path(directory, entry)
    if path.is_dir():
        return _build(path, expect_kind="Kustomization")
    return list(_yaml_objects(path))


def _yaml_objects(path: Path) -> Iterator[Manifest]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document must be an object with apiVersion/kind")
        if doc["kind"].endswith("List"):
            raise KustomizeError(f"{path}: List objects are not supported")
        yield doc


def _check_unique(resources: Iterable[Manifest]) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in resources:
        rid = resource_id(obj)
        key = (_group(rid[0]), rid[1], rid[2], rid[3])
        if key in seen:
            raise KustomizeError(f"duplicate resource {rid}")
        seen.add(key)


# --- generators -----------------------------------------------------------------------------


def _generate_configmap(directory: Path, spec: dict[str, Any]) -> Manifest:
    known = {"name", "files", "literals", "options", "behavior"}
    if set(spec) - known:
        raise KustomizeError(f"configMapGenerator {spec.get('name')}: {sorted(set(spec) - known)}")
    if spec.get("behavior", "create") != "create":
        raise KustomizeError("configMapGenerator: only behavior=create is implemented")
    options = spec.get("options") or {}
    if options.get("disableNameSuffixHash") is not True:
        raise KustomizeError(
            f"configMapGenerator {spec['name']}: name hash suffixes are not implemented; "
            "set options.disableNameSuffixHash: true"
        )
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, rel = entry.rpartition("=")
        path = _local_path(directory, rel)
        data[key or path.name] = path.read_text()
    for literal in spec.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep:
            raise KustomizeError(f"configMapGenerator literal {literal!r} has no '='")
        data[key] = value
    metadata: dict[str, Any] = {"name": spec["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    if options.get("annotations"):
        metadata["annotations"] = dict(options["annotations"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


# --- patches --------------------------------------------------------------------------------


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _version(api_version: str) -> str:
    return api_version.rpartition("/")[2]


def _labels_match(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        else:
            raise KustomizeError(f"label selector term {term!r} is not implemented")
    return True


def _matches(obj: Manifest, target: dict[str, Any]) -> bool:
    known = {"group", "version", "kind", "name", "namespace", "labelSelector"}
    if set(target) - known:
        raise KustomizeError(f"patch target fields {sorted(set(target) - known)} not implemented")
    api_version = str(obj["apiVersion"])
    meta = obj.get("metadata") or {}
    checks = [
        ("group", _group(api_version)),
        ("version", _version(api_version)),
        ("kind", str(obj["kind"])),
        ("namespace", str(meta.get("namespace", ""))),
    ]
    for field, actual in checks:
        if field in target and target[field] != actual:
            return False
    if "name" in target and not re.fullmatch(str(target["name"]), str(meta.get("name", ""))):
        return False
    return not (
        "labelSelector" in target
        and not _labels_match(meta.get("labels") or {}, str(target["labelSelector"]))
    )


def _apply_patch(
    directory: Path, spec: dict[str, Any], resources: list[Manifest]
) -> list[Manifest]:
    if set(spec) - {"path", "patch", "target"}:
        raise KustomizeError(f"patch fields {sorted(set(spec) - {'path', 'patch', 'target'})}")
    if ("path" in spec) == ("patch" in spec):
        raise KustomizeError("a patch needs exactly one of path/patch")
    text = _local_path(directory, spec["path"]).read_text() if "path" in spec else spec["patch"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = spec.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if target is None:
            raise KustomizeError("a JSON 6902 patch needs a target")
        hits = [obj for obj in resources if _matches(obj, target)]
        if not hits:
            raise KustomizeError(f"patch target {target} matches nothing")
        for obj in hits:
            _json6902(obj, docs[0])
        return resources
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError("a strategic-merge patch must be an object")
        if target is not None:
            hits = [obj for obj in resources if _matches(obj, target)]
        else:
            name = (doc.get("metadata") or {}).get("name")
            hits = [
                obj
                for obj in resources
                if obj["kind"] == doc.get("kind")
                and _group(obj["apiVersion"]) == _group(str(doc.get("apiVersion", "")))
                and (obj.get("metadata") or {}).get("name") == name
            ]
            if len(hits) > 1:
                raise KustomizeError(f"patch {doc.get('kind')}/{name} matches {len(hits)} objects")
        if not hits:
            raise KustomizeError(f"patch {doc.get('kind')}/{doc.get('metadata')} matches nothing")
        for obj in hits:
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
            if target is not None:
                body.get("metadata", {}).pop("name", None)
            builtin = _group(str(obj["apiVersion"])) in BUILTIN_GROUPS
            merged = _strategic_merge(obj, body, path=(), kind=str(obj["kind"]), builtin=builtin)
            obj.clear()
            obj.update(merged)
    return resources


def _merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The strategic-merge key of the list at ``path`` in a built-in object, if it has one."""
    if not path:
        return None
    last = path[-1]
    if last in ("containers", "initContainers", "ephemeralContainers", "volumes", "env"):
        return "name"
    if last == "volumeMounts":
        return "mountPath"
    if last == "ports":
        return "port" if kind == "Service" and path == ("spec", "ports") else "containerPort"
    return None


def _strategic_merge(
    original: Any, patch: Any, *, path: tuple[str, ...], kind: str, builtin: bool
) -> Any:
    if isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise KustomizeError(f"strategic-merge directives at {path} are not implemented")
        result = copy.deepcopy(original) if isinstance(original, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _strategic_merge(
                    result.get(key), value, path=(*path, key), kind=kind, builtin=builtin
                )
        return result
    if isinstance(patch, list) and isinstance(original, list):
        key = _merge_key(kind, path) if builtin else None
        if key is None:
            if not builtin and any(isinstance(item, dict) for item in patch):
                raise KustomizeError(
                    f"strategic merge of a list of objects in a {kind} (no schema) at {path} "
                    "is not implemented"
                )
            return copy.deepcopy(patch)
        by_key = {item.get(key): item for item in original if isinstance(item, dict)}
        merged = [
            _strategic_merge(by_key.get(item.get(key)), item, path=path, kind=kind, builtin=True)
            for item in patch
        ]
        patched = {item.get(key) for item in patch}
        rest = [copy.deepcopy(item) for item in original if item.get(key) not in patched]
        return merged + rest
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(obj: Manifest, operations: list[dict[str, Any]]) -> None:
    for op in operations:
        kind = op.get("op")
        parts = _pointer(str(op.get("path", "")))
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), value)
            else:
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        elif kind == "replace":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                if last not in parent:
                    raise KustomizeError(f"replace: {op['path']} does not exist")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "test":
            actual = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if actual != op.get("value"):
                raise KustomizeError(f"test failed at {op['path']}")
        else:
            raise KustomizeError(f"JSON 6902 op {kind!r} is not implemented")


# --- transformers ---------------------------------------------------------------------------


def _set_namespace(resources: list[Manifest], namespace: str) -> None:
    for obj in resources:
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            raise KustomizeError("namespace rewrite of binding subjects is not implemented")
        meta = obj.setdefault("metadata", {})
        if obj["kind"] == "Namespace":
            meta["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED_KINDS:
            meta["namespace"] = namespace


def _add_labels(resources: list[Manifest], spec: dict[str, Any]) -> None:
    if set(spec) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise KustomizeError(f"labels fields {sorted(spec)} not implemented")
    if spec.get("includeSelectors") or spec.get("includeTemplates"):
        raise KustomizeError("labels.includeSelectors/includeTemplates are not implemented")
    for obj in resources:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.update({str(k): str(v) for k, v in spec["pairs"].items()})


def _set_replicas(resources: list[Manifest], spec: dict[str, Any]) -> None:
    hits = [
        obj
        for obj in resources
        if obj["kind"] in REPLICA_KINDS and obj["metadata"].get("name") == spec["name"]
    ]
    if not hits:
        raise KustomizeError(f"replicas: no workload named {spec['name']!r}")
    for obj in hits:
        obj.setdefault("spec", {})["replicas"] = int(spec["count"])


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _set_image(resources: list[Manifest], spec: dict[str, Any]) -> None:
    if set(spec) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"images fields {sorted(spec)} not implemented")
    for obj in resources:
        for container in _containers(obj):
            name, tag, digest = _split_image(str(container.get("image", "")))
            if name != spec["name"]:
                continue
            name = spec.get("newName", name)
            if "digest" in spec:
                container["image"] = f"{name}@{spec['digest']}"
            elif "newTag" in spec:
                container["image"] = f"{name}:{spec['newTag']}"
            else:
                ref = f"{name}:{tag}" if tag else name
                container["image"] = f"{ref}@{digest}" if digest else ref
