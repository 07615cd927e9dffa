"""Parsing ``clipscore:SPEC`` strings into a :class:`ClipSpec` (alias, MODEL/TAG, hf-hub:, local-dir:, MODEL@file)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, UnknownMetricError
from .aliases import CLIP_ALIASES, DEFAULT_ALIAS


@dataclass(frozen=True)
class ClipSpec:
    """A parsed ``clipscore:SPEC``. ``kind`` is ``pretrained`` (alias or MODEL/TAG), ``hf-hub``, ``local-dir``,
    ``file`` (MODEL[/TAG]@PATH) or ``hub-file`` (an alias whose weights file is ``path`` in HF repo ``repo``,
    loaded onto the bare architecture ``model``: RemoteCLIP, GeoRSCLIP)."""

    text: str
    kind: str
    model: str | None = None
    pretrained: str | None = None
    repo: str | None = None
    path: str | None = None
    alias: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "pretrained":
            return f"{self.model}/{self.pretrained}"
        if self.kind == "hf-hub":
            return f"hf-hub:{self.repo}"
        if self.kind == "local-dir":
            return f"local-dir:{self.path}"
        if self.kind == "hub-file":
            return f"{self.model}@hf:{self.repo}/{self.path}"
        return f"{self.model}{'/' + self.pretrained if self.pretrained else ''}@{self.path}"


def import_open_clip():
    import open_clip  # imported lazily: listing metrics must stay fast and never load weights

    return open_clip


def _check_tag(model: str, tag: str, text: str) -> str:
    oc = import_open_clip()
    if model not in oc.list_models():
        close = difflib.get_close_matches(model, oc.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownMetricError(f"clipscore:{text}: unknown open_clip model '{model}'{hint}")
    if not oc.is_pretrained_cfg(model, tag):
        tags = oc.list_pretrained_tags_by_model(model)
        raise UnknownMetricError(
            f"clipscore:{text}: '{tag}' is not a pretrained tag of {model} "
            f"(known: {', '.join(tags) if tags else 'none; use ' + model + '@/path/to/weights'})")
    return tag.lower().replace("-", "_")


def parse_clip_spec(text: str | None) -> ClipSpec:
    """Parse the SPEC of ``clipscore:SPEC`` (see the module docstring for the syntax)."""
    raw = (text or "").strip() or DEFAULT_ALIAS
    alias = CLIP_ALIASES.get(raw.lower())
    if alias is not None and alias.hf_file:
        return ClipSpec(raw, "hub-file", model=alias.model, pretrained=alias.pretrained, repo=alias.hf_repo,
                        path=alias.hf_filename, alias=alias.name)
    if alias is not None:
        return ClipSpec(raw, "pretrained", model=alias.model, pretrained=alias.pretrained, alias=alias.name)
    if raw.startswith("hf-hub:"):
        repo = raw[len("hf-hub:"):].strip().strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ConfigError(f"clipscore:{raw}: expected hf-hub:ORG/REPO")
        return ClipSpec(raw, "hf-hub", repo=repo)
    if raw.startswith("local-dir:"):
        path = raw[len("local-dir:"):].strip()
        if not path:
            raise ConfigError(f"clipscore:{raw}: expected local-dir:PATH")
        return ClipSpec(raw, "local-dir", path=str(Path(path).expanduser()))
    if "@" in raw:
        left, path = (s.strip() for s in raw.split("@", 1))
        if not left or not path:
            raise ConfigError(f"clipscore:{raw}: expected MODEL@/path/to/weights or MODEL/TAG@/path/to/weights")
        model, _, tag = left.partition("/")
        oc = import_open_clip()
        if model not in oc.list_models():
            close = difflib.get_close_matches(model, oc.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownMetricError(f"clipscore:{raw}: unknown open_clip architecture '{model}'{hint}")
        return ClipSpec(raw, "file", model=model, pretrained=_check_tag(model, tag, raw) if tag else None,
                        path=str(Path(path).expanduser()))
    if "/" in raw:
        model, tag = raw.split("/", 1)
        return ClipSpec(raw, "pretrained", model=model, pretrained=_check_tag(model, tag, raw))
    oc = import_open_clip()
    if raw in oc.list_models():
        tags = oc.list_pretrained_tags_by_model(raw)
        choices = ", ".join(f"{raw}/{t}" for t in tags[:4]) + (", ..." if len(tags) > 4 else "")
        raise UnknownMetricError(f"clipscore:{raw}: name the weights too: {choices or raw + '/TAG'} "
                                 f"or {raw}@/path/to/weights.pt")
    close = difflib.get_close_matches(raw.lower(), list(CLIP_ALIASES), n=3, cutoff=0.5)
    close += difflib.get_close_matches(raw, oc.list_models(), n=2, cutoff=0.7)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownMetricError(f"clipscore:{raw}: not a CLIP alias, MODEL/TAG, hf-hub:, local-dir: or MODEL@FILE "
                             f"spec{hint} (run 'srmetrics models' for the aliases)")
