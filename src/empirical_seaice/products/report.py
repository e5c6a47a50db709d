"""The run's summary as data (``summary_TAG.json``) and the run report (``plots_TAG/index.html``).

:func:`summary_dict` gathers what the printed summary table shows, as plain
JSON-able values: the run's facts (tag, preset, sensors, period, sizes,
epochs, wall time, code version), the cost J by term before and after
training, the per-channel departures, and the truth scores when the data has
a truth (the synthetic twin). :func:`write_summary_files` writes it beside
the text summary; :func:`write_report` renders it as the HTML report that
opens the plots: facts, score tables, then every figure with a one-line
caption. No torch, no matplotlib.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.io.transaction import atomic_path

SUMMARY_FORMAT = 1
"""Version of the layout of ``summary_TAG.json`` (key ``format``)."""


def _num(x: Any) -> Any:
    """A float for JSON: NaN / inf become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summary_dict(
    *,
    facts: Mapping[str, Any],
    channel_names: Sequence[str],
    sensor_names: Sequence[str],
    cost_before: Mapping[str, float] | None = None,
    cost_after: Mapping[str, float] | None = None,
    departures_before: Any = None,
    departures_after: Any = None,
    truth: Any = None,
) -> dict[str, Any]:
    """The run's summary as plain data (see the module docstring; docs/outputs.md lists the keys).

    departures_* : DepartureStats (count, mean, std per channel) or None.
    truth : TruthScores or None.
    """
    out: dict[str, Any] = {"format": SUMMARY_FORMAT, "run": dict(facts)}
    terms = sorted(set(cost_before or {}) | set(cost_after or {}), key=lambda k: (k == "total", k))
    out["cost"] = {
        t: {"before": _num((cost_before or {}).get(t)), "after": _num((cost_after or {}).get(t))} for t in terms
    }
    chans: dict[str, Any] = {}
    for j, name in enumerate(channel_names):
        row: dict[str, Any] = {}
        for label, d in (("before", departures_before), ("after", departures_after)):
            if d is not None:
                row["count"] = int(np.asarray(d.count)[j])
                row[f"departure_mean_k_{label}"] = _num(np.asarray(d.mean)[j])
                row[f"departure_std_k_{label}"] = _num(np.asarray(d.std)[j])
        if truth is not None:
            row["ice_emis_rmse"] = _num(np.asarray(truth.emis_rmse)[j])
        chans[str(name)] = row
    out["channels"] = chans
    if truth is not None:
        t: dict[str, Any] = {
            "grid_steps": int(truth.npoints),
            "sic_rmse": {"background": _num(truth.sic_rmse_background), "trained": _num(truth.sic_rmse)},
            "sic_bias": {"background": _num(truth.sic_bias_background), "trained": _num(truth.sic_bias)},
        }
        for key in ("bias_ice_error", "bias_ocean_error"):
            err = getattr(truth, key, None)
            if err is not None:
                err = np.asarray(err, dtype=np.float64)
                t[f"{key}_max_abs_k"] = {
                    s: _num(np.nanmax(np.abs(err[i])) if np.isfinite(err[i]).any() else np.nan)
                    for i, s in enumerate(sensor_names)
                }
        out["truth"] = t
    return out


def _atomic_text(path: Path, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_summary_files(output: Path, tag: str, text: str, summary: Mapping[str, Any]) -> list[Path]:
    """``summary_TAG.txt`` (the table printed on stdout) and ``summary_TAG.json`` (:func:`summary_dict`)."""
    output = Path(output)
    return [
        _atomic_text(output / f"summary_{tag}.txt", text.rstrip("\n") + "\n"),
        _atomic_text(output / f"summary_{tag}.json", json.dumps(summary, indent=1, sort_keys=False) + "\n"),
    ]


# ---------------------------------------------------------------------------- HTML
_CSS = (
    "body{font-family:sans-serif;margin:1.2em;max-width:1400px;color:#111}"
    "table{border-collapse:collapse;margin:0.4em 0 1em 0}"
    "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right;font-size:0.9em}"
    "th{background:#eef}td.l,th.l{text-align:left}"
    "figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:920px}"
    "img{max-width:900px;border:1px solid #ddd}figcaption{font-size:0.9em;margin-top:0.2em}"
)

FACT_LABELS = (
    ("tag", "run tag"),
    ("mode", "mode"),
    ("preset", "preset"),
    ("sensors", "sensors"),
    ("period_start", "first day"),
    ("period_end", "last day"),
    ("nsteps", "steps (days)"),
    ("nobs", "observations"),
    ("ngrid", "grid points"),
    ("epochs", "epochs"),
    ("train_seconds", "training time (s)"),
    ("wall_seconds", "wall time to the report (s)"),
    ("obs_per_s", "training speed (obs/s)"),
    ("data", "training data"),
    ("code_version", "code version"),
    ("date_created", "written"),
)


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    if isinstance(x, (list, tuple)):
        return " ".join(map(str, x))
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th class='{'l' if k == 0 else ''}'>{html.escape(h)}</th>" for k, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'l' if k == 0 else ''}'>{html.escape(_fmt(v))}</td>" for k, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def report_sections(summary: Mapping[str, Any] | None) -> list[str]:
    """HTML fragments: run facts, cost table, truth scores, classic scores, channel table."""
    if not summary:
        return []
    parts: list[str] = []
    facts = summary.get("run", {})
    rows: list[Sequence[Any]] = [(label, facts[key]) for key, label in FACT_LABELS if key in facts]
    parts.append("<h2>Run</h2>" + _table(("", "value"), rows, "facts"))
    truth = summary.get("truth")
    classic = summary.get("classic_sic_rmse")
    if truth or classic:
        sic_rows = []
        if truth:
            n = truth["grid_steps"]
            sic_rows.append(("background", truth["sic_rmse"]["background"], truth["sic_bias"]["background"], n))
            sic_rows.append(("trained", truth["sic_rmse"]["trained"], truth["sic_bias"]["trained"], n))
        for name, v in (classic or {}).items():
            sic_rows.append((name.replace("_", " "), v.get("rmse"), v.get("bias"), v.get("n")))
        parts.append(
            "<h2>Scores against the truth</h2>"
            "<p>SIC against the twin's truth over the grid points and days with observations.</p>"
            + _table(("SIC", "RMSE", "bias", "grid-steps"), sic_rows, "truth")
        )
    cost = summary.get("cost")
    if cost:
        crow = [(k, v.get("before"), v.get("after")) for k, v in cost.items()]
        parts.append(
            "<h2>Cost J by term</h2><p>Full cost over all observations in float64. "
            "<code>warm_ice</code> is monitored only in the default diagnostic mode (no gradient), "
            "and is included in <code>total</code>.</p>" + _table(("term", "before", "after"), crow, "cost")
        )
    chans = summary.get("channels")
    if chans:
        keys = (
            ("count", "n"),
            ("departure_mean_k_before", "mean before (K)"),
            ("departure_std_k_before", "std before (K)"),
            ("departure_mean_k_after", "mean after (K)"),
            ("departure_std_k_after", "std after (K)"),
            ("ice_emis_rmse", "ice emis. RMSE vs truth"),
        )
        present = [k for k in keys if any(k[0] in r for r in chans.values())]
        rows = [[name, *(r.get(k) for k, _ in present)] for name, r in chans.items()]
        parts.append(
            "<h2>Observed minus simulated TB per channel</h2>"
            + _table(("channel", *(label for _, label in present)), rows, "channels")
        )
    return parts


def write_report(
    plot_dir: Path,
    figures: Sequence[tuple[str, str]],
    *,
    title: str = "",
    summary: Mapping[str, Any] | None = None,
    summary_text: str = "",
) -> Path:
    """``index.html`` in ``plot_dir``: the run's facts and scores (from ``summary``; without one, a run of
    ``--trainonly``, a line saying what ``--diagsonly`` adds), the text summary, then each (PNG file name,
    one-line caption) figure."""
    plot_dir = Path(plot_dir)
    head = html.escape(title or "run report")
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{head}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{head}</h1>",
        *report_sections(summary),
    ]
    if summary is None:  # (--trainonly: the report had fewer figures and no tables, without a word)
        parts.append(
            "<p>This run computed no diagnostics (<code>--trainonly</code>): the run's facts, the scores, the cost "
            "and channel tables and the figures of the departures and the truth come with <code>seaice-training "
            "--diagsonly</code> of its model (<code>--modeltag</code> and <code>--tag</code> its tag).</p>"
        )
    if summary_text:
        parts.append(
            "<details><summary>summary table as printed</summary><pre>" + html.escape(summary_text) + "</pre></details>"
        )
    if figures:
        parts.append("<h2>Figures</h2>")
    for name, caption in figures:
        parts.append(
            f"<figure><a href='{html.escape(name)}'><img src='{html.escape(name)}' alt='{html.escape(caption)}'></a>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return _atomic_text(plot_dir / "index.html", "\n".join(parts) + "\n")


__all__ = ["SUMMARY_FORMAT", "summary_dict", "write_summary_files", "write_report", "report_sections"]
