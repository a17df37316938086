"""Image models at submit: each image tag resolved to the digest it names now, so the digest is
part of the model version (a new push of the tag is a new version; the same digest is the same
version, and its results answer from the cache) and the recorded spec names the image by digest
(every attempt of the version runs exactly that image, wherever the tag has moved meanwhile)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from modelrunner.errors import Conflict
from modelrunner.execution.container_cli import ContainerEngineMissing, call, container_cli, last_line
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.workspace import Model, Workspace

_DIGEST_PREFIX = "sha256:"
_REGISTRY_SECONDS = 20.0  # a registry that answers no sooner fails the submit


class ImageUnavailable(Conflict):
    """An image model's tag names no image that this machine's container engine (or a registry
    reached through skopeo) knows now."""


@dataclass(frozen=True)
class ImageName:
    """``repository[:tag][@digest]`` taken apart."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> ImageName:
        name, _, digest = reference.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:  # a colon before the last slash belongs to a registry's port
            return cls(name[:colon], name[colon + 1 :], digest or None)
        return cls(name, None, digest or None)

    def pinned(self, digest: str) -> str:
        """This name at ``digest``; the tag stays for people to read (engines go by the digest)."""
        tagged = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{tagged}@{digest}"


class ImageResolver:
    """Resolves image references with the container engine of this machine (``engine``: podman
    or docker, the first installed when None)."""

    def __init__(self, engine: str | None = None) -> None:
        self._engine = engine

    def pinned(self, reference: str) -> str:
        """``reference`` with the digest it names now (as it is when it names one already);
        ImageUnavailable naming the image when neither this machine nor its registry has it."""
        name = ImageName.parse(reference)
        if name.digest is not None:
            return reference
        try:
            cli = container_cli(self._engine)
        except ContainerEngineMissing as exc:
            raise ImageUnavailable(f"image '{reference}' cannot be resolved: {exc.message}", image=reference) from exc
        found = call(cli, "image", "inspect", reference)
        if found.returncode == 0:
            return self._local(cli, name, found.stdout, reference)
        remote = self._remote(reference)
        if remote is not None:
            return name.pinned(remote)
        raise ImageUnavailable(
            f"image '{reference}' cannot be resolved to a digest: {last_line(found.stderr) or 'unknown image'} "
            f"(build or pull it on the server's machine, or push it to a registry skopeo can reach)",
            image=reference,
        )

    @staticmethod
    def _local(cli: str, name: ImageName, inspected: str, reference: str) -> str:
        try:
            details = json.loads(inspected)[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise ImageUnavailable(f"image '{reference}': {cli} answered no image details", image=reference) from exc
        digest = details.get("Digest")  # podman: the manifest's digest, what a registry serves
        if isinstance(digest, str) and digest.startswith(_DIGEST_PREFIX):
            return name.pinned(digest)
        for repo_digest in details.get("RepoDigests") or []:  # docker: digests of pushed or pulled images
            repository, _, digest = str(repo_digest).partition("@")
            if repository == name.repository and digest.startswith(_DIGEST_PREFIX):
                return name.pinned(digest)
        # An image only ever built here (docker) has no manifest digest: its id is its content.
        image_id = str(details.get("Id", ""))
        if not image_id:
            raise ImageUnavailable(f"image '{reference}': {cli} answered no digest", image=reference)
        return image_id if image_id.startswith(_DIGEST_PREFIX) else _DIGEST_PREFIX + image_id

    @staticmethod
    def _remote(reference: str) -> str | None:
        """The digest a registry serves for ``reference``, through skopeo when it is installed."""
        try:
            cli = container_cli("skopeo")
        except ContainerEngineMissing:
            return None
        found = call(cli, "inspect", "--format", "{{.Digest}}", f"docker://{reference}", timeout=_REGISTRY_SECONDS)
        digest = found.stdout.strip()
        return digest if found.returncode == 0 and digest.startswith(_DIGEST_PREFIX) else None


class ImageVersions:
    """Gives submit the model as it runs now: an image model's version covers its images' digests."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace

    def model(self, name: str) -> Model:
        """The workspace's model ``name``; for an image model (or a pipeline with image steps),
        its images pinned to their digests in the spec and in the version (ImageUnavailable naming
        an image that cannot be resolved). Other models are returned as they are."""
        model = self._workspace.model(name)
        spec = model.spec
        images = [(None, spec.image)] if not spec.steps else [(n, s.image) for n, s in spec.steps.items()]
        wanted = [(step, image) for step, image in images if image is not None]
        if not wanted:
            return model
        resolver = ImageResolver(self._engine())
        pinned = {step: resolver.pinned(image) for step, image in wanted}
        return replace(model, spec=pin_images(spec, pinned), version=image_version(model.version, pinned))

    def _engine(self) -> str | None:
        """The engine a ``container`` backend names, so tags resolve where they run."""
        for backend in self._workspace.spec().declared_backends().values():
            engine = getattr(backend, "engine", None)
            if backend.type == "container" and engine is not None:
                return str(engine)
        return None


def pin_images(spec: ModelSpec, pinned: dict[str | None, str]) -> ModelSpec:
    """``spec`` with the images of ``pinned`` (step name, None for the model itself -> reference) in place."""
    # Validated anew rather than copied: a copy would keep what the spec derived from its old image.
    document = spec.model_dump(mode="json")
    for step, image in pinned.items():
        (document if step is None else document["steps"][step])["image"] = image
    return ModelSpec.model_validate(document)


def image_version(content: str, pinned: dict[str | None, str]) -> str:
    """The folder's content hash and the images' digests, hashed: 16 hex digits as every version."""
    digest = hashlib.sha256(content.encode())
    for step, image in sorted(pinned.items(), key=lambda item: item[0] or ""):
        digest.update(f"\0{step or ''}\0{image}".encode())
    return digest.hexdigest()[:16]
