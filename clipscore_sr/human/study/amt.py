"""Amazon Mechanical Turk export: a HIT input CSV and a crowd-html template, ``K`` trials per HIT.

HIT ``h`` holds trials ``h*K+1 .. h*K+K`` in the study's order (sentinels and repeats included). Slot ``k``
(1-based) of a HIT has the columns :data:`SLOT_FIELDS` with suffix ``_k``: the canonical ``pair_id``,
``dataset``, ``gt``, ``a``, ``b``, ``a_method``, ``b_method``, ``trial_kind`` (the same strings a local
session records), the image URLs ``gt_url``/``left_url``/``right_url`` (``--image-base-url`` + the render's
path under the study folder) and ``left``/``right`` (``a`` or ``b``: which candidate each side shows; seeded
per HIT and slot, a repeat swapped against its original). The template's radio buttons submit ``left``'s or
``right``'s value, so ``Answer.choice_k`` is already ``a``, ``b`` or ``tie``: :data:`IMPORT_MAPS` imports the
results with ``srmetrics judgements import-amt``. Slots of the last HIT that have no trial are empty and the
template hides them.
"""

from __future__ import annotations

import csv
import hashlib
import html
import os
import urllib.parse
from pathlib import Path

from .manifest import Study, StudyError

SLOT_FIELDS = ("pair_id", "dataset", "gt", "a", "b", "a_method", "b_method", "trial_kind", "gt_url", "left_url",
               "right_url", "left", "right")
IMPORT_MAPS = ("pair_id=Input.pair_id_{k}", "dataset=Input.dataset_{k}", "gt=Input.gt_{k}", "a=Input.a_{k}",
               "b=Input.b_{k}", "a_method=Input.a_method_{k}", "b_method=Input.b_method_{k}",
               "trial_kind=Input.trial_kind_{k}", "choice=Answer.choice_{k}")


def import_command(results: str, out: str) -> str:
    """The exact ``srmetrics judgements import-amt`` command for the batch results of an export."""
    maps = " ".join(f"--map '{m}'" for m in IMPORT_MAPS)
    return f"srmetrics judgements import-amt {results} {maps} -o {out}"


def _left(seed: int, hit: int, slot: int, trial_id: str) -> str:
    h = hashlib.sha256(f"amt\0{seed}\0{hit}\0{slot}\0{trial_id}".encode()).digest()
    return "a" if h[0] & 1 else "b"


def hit_rows(study: Study, trials_per_hit: int, image_base_url: str) -> list[dict[str, str]]:
    """One dict per HIT with the ``<field>_<k>`` columns (see the module docstring)."""
    if trials_per_hit < 1:
        raise StudyError(f"--trials-per-hit {trials_per_hit}: must be >= 1")
    if not image_base_url.lower().startswith(("https://", "http://")):
        raise StudyError(f"--image-base-url '{image_base_url}': expected an http(s):// URL where the study's "
                         "renders/ folder is uploaded (its parent)")
    base = image_base_url if image_base_url.endswith("/") else image_base_url + "/"
    sides: dict[str, str] = {}
    rows = []
    for h in range(0, len(study.trials), trials_per_hit):
        row: dict[str, str] = {}
        for k in range(1, trials_per_hit + 1):
            i = h + k - 1
            vals = dict.fromkeys(SLOT_FIELDS, "")
            if i < len(study.trials):
                t = study.trials[i]
                if t.kind == "repeat":
                    left = "b" if sides[t.repeat_of] == "a" else "a"
                else:
                    left = _left(study.seed, h // trials_per_hit, k, t.id)
                sides[t.id] = left
                right = "b" if left == "a" else "a"
                render = {"a": t.a_render, "b": t.b_render}

                def url(rel: str) -> str:
                    return base + urllib.parse.quote(rel)

                vals.update(pair_id=t.id, dataset=study.dataset, gt=t.gt, a=t.a, b=t.b, a_method=t.a_method,
                            b_method=t.b_method, trial_kind=t.kind, gt_url=url(t.gt_render),
                            left_url=url(render[left]), right_url=url(render[right]), left=left, right=right)
            row.update({f"{f}_{k}": v for f, v in vals.items()})
        rows.append(row)
    return rows


def template(study: Study, trials_per_hit: int) -> str:
    """The HIT's HTML (crowd-html-elements), one block per slot."""
    tie = study.allow_tie
    blocks = []
    for k in range(1, trials_per_hit + 1):
        tie_radio = (f'<label><input type="radio" name="choice_{k}" value="tie" required> can\'t tell</label>'
                     if tie else "")
        blocks.append(f"""
  <div class="trial" data-pair="${{pair_id_{k}}}">
    <p><b>Trial {k}.</b> Which candidate is closer to the reference (middle)?</p>
    <div class="row">
      <figure><img src="${{left_url_{k}}}" alt="left candidate"><figcaption>left</figcaption></figure>
      <figure><img src="${{gt_url_{k}}}" alt="reference"><figcaption>reference (GT)</figcaption></figure>
      <figure><img src="${{right_url_{k}}}" alt="right candidate"><figcaption>right</figcaption></figure>
    </div>
    <p class="choice">
      <label><input type="radio" name="choice_{k}" value="${{left_{k}}}" required> left</label>
      <label><input type="radio" name="choice_{k}" value="${{right_{k}}}" required> right</label>
      {tie_radio}
    </p>
  </div>""")
    title = html.escape(f"Super-resolution study: {study.dataset}")
    return f"""<!-- {title}: made by srmetrics study export-amt; answers import with srmetrics judgements import-amt -->
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<style>
  .row {{ display: flex; gap: 12px; }} figure {{ margin: 0; text-align: center; }}
  img {{ width: 256px; height: 256px; image-rendering: pixelated; object-fit: contain; background: #000; }}
  .trial {{ border-bottom: 1px solid #ccc; padding: 8px 0; }}
</style>
<crowd-form answer-format="flatten-objects">
  <crowd-instructions link-text="Instructions" link-type="button">
    <short-summary><p>For each trial choose the candidate (left or right) that looks closer to the reference
      image in the middle.</p></short-summary>
    <detailed-instructions><p>Look at detail, edges and textures. Some trials are attention checks with a
      clear answer.</p></detailed-instructions>
  </crowd-instructions>
{"".join(blocks)}
</crowd-form>
<script>
  // slots of the last HIT that hold no trial are removed (their fields are empty)
  document.querySelectorAll(".trial").forEach(function (el) {{
    if (!el.getAttribute("data-pair")) el.remove();
  }});
</script>
"""


def export_amt(study: Study, trials_per_hit: int, image_base_url: str, out_csv: str | os.PathLike,
               template_out: str | os.PathLike) -> int:
    """Write the HIT CSV and the template; returns the number of HITs."""
    rows = hit_rows(study, trials_per_hit, image_base_url)
    cols = [f"{f}_{k}" for k in range(1, trials_per_hit + 1) for f in SLOT_FIELDS]
    out_csv, template_out = Path(out_csv), Path(template_out)
    for p in (out_csv, template_out):
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(f".{out_csv.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out_csv)
    template_out.write_text(template(study, trials_per_hit), encoding="utf-8")
    return len(rows)
