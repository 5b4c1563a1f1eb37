"""``edgeloop eval nab|skab``: detection quality on public benchmarks, through a node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from edgeloop.pipeline.spec import PipelineSpec

app = typer.Typer(
    help="Score the edge detectors on public benchmarks (NAB, SKAB), replayed through a node.",
    no_args_is_help=True,
)

PresetOpt = Annotated[
    str, typer.Option(help="Pipeline preset name or YAML path (default: the benchmark's).")
]
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="Write the figures to this JSON file.")
]


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _spec(preset: str) -> PipelineSpec:
    from edgeloop.errors import ConfigError
    from edgeloop.node.build import resolve_spec

    try:
        return resolve_spec(preset)
    except ConfigError as e:
        _fail(str(e))
        raise  # unreachable


def _progress(console: Console) -> Progress:
    """One bar per file; the files are replayed side by side, so all bars move."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}", style="cyan"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    )


@app.command("nab")
def nab_cmd(
    data: Annotated[Path, typer.Option(help="NAB data directory (<folder>/<file>.csv).")],
    labels: Annotated[
        Path | None,
        typer.Option(help="combined_windows.json (default: <data>/../labels/...)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results directory (NAB layout).")] = Path(
        "eval-out/nab"
    ),
    preset: PresetOpt = "nab",
    profiles: Annotated[
        Path | None, typer.Option(help="profiles.json (default: <data>/../profiles.json).")
    ] = None,
    detector: Annotated[str, typer.Option(help="Detector name in result file names.")] = (
        "edgeloop"
    ),
    json_out: JsonOpt = None,
) -> None:
    """Replay NAB through a node running the preset; write results; score (NAB v1.1)."""
    from rich.console import Console
    from rich.table import Table

    from edgeloop.eval import nab
    from edgeloop.eval.run_nab import evaluate_nab

    labels = labels or data.parent / "labels" / "combined_windows.json"
    profiles = profiles or data.parent / "profiles.json"
    for p, what in ((data, "data directory"), (labels, "labels file"), (profiles, "profiles")):
        if not p.exists():
            _fail(f"{what} not found: {p}")
    spec = _spec(preset)
    console = Console()
    try:
        corpus = nab.load_corpus(data, labels)
    except (OSError, ValueError, KeyError) as e:
        _fail(f"cannot load the NAB corpus from {data} with {labels}: {e}")
    bar = _progress(console)
    with bar:
        sizes = zip(corpus.names, corpus.lengths, strict=True)
        tasks = [bar.add_task(n, total=int(k)) for n, k in sizes]
        res = evaluate_nab(
            data,
            labels,
            spec,
            out_dir=out,
            profiles_file=profiles,
            detector=detector,
            progress=lambda i, done: bar.update(tasks[i], completed=done),
            corpus=corpus,
        )
    table = Table(title=f"NAB v1.1 — {res.files} files, {res.rows:,} rows, preset {spec.name}")
    table.add_column("profile")
    table.add_column("scoreboard (best threshold)", justify="right")
    table.add_column("fixed (preset threshold)", justify="right")
    table.add_column("windows hit", justify="right")
    for prof, best in res.scoreboard.items():
        fixed = res.fixed[prof]
        table.add_row(
            prof,
            f"{best.normalised:.2f}  (t={best.threshold:.4g})",
            f"{fixed.normalised:.2f}  (t={fixed.threshold:.4g})",
            f"{fixed.detected}/{fixed.windows}",
        )
    console.print(table)
    _throughput(console, res.to_json())
    console.print(f"results written to {out}/<folder>/{detector}_<file>.csv")
    if json_out is not None:
        json_out.write_text(json.dumps(res.to_json(), indent=2) + "\n")
        console.print(f"figures written to {json_out}")


@app.command("skab")
def skab_cmd(
    data: Annotated[Path, typer.Option(help="SKAB data directory (<folder>/<n>.csv).")],
    out: Annotated[Path, typer.Option(help="Results directory (SKAB layout).")] = Path(
        "eval-out/skab"
    ),
    preset: PresetOpt = "skab",
    json_out: JsonOpt = None,
) -> None:
    """Replay SKAB through a node running the preset; write outputs; score F1 and CPs."""
    from rich.console import Console
    from rich.table import Table

    from edgeloop.eval import skab
    from edgeloop.eval.run_skab import evaluate_skab

    if not data.is_dir():
        _fail(f"data directory not found: {data}")
    spec = _spec(preset)
    console = Console()
    try:
        files = skab.load_skab(data)
    except (OSError, ValueError) as e:
        _fail(f"cannot load SKAB from {data}: {e}")
    if not files:
        _fail(f"no SKAB experiments (<folder>/<n>.csv) under {data}")
    bar = _progress(console)
    with bar:
        tasks = [bar.add_task(f.name, total=len(f.timestamps)) for f in files]
        res = evaluate_skab(
            data,
            spec,
            out_dir=out,
            progress=lambda i, done: bar.update(tasks[i], completed=done),
            files=files,
        )
    j = res.to_json()
    table = Table(title=f"SKAB — {res.files} experiments, {res.rows:,} rows, preset {spec.name}")
    table.add_column("task")
    table.add_column("figure", justify="right")
    o = j["outliers"]
    table.add_row("outliers F1", f"{o['f1']:.3f}")
    table.add_row("outliers FAR / MAR, %", f"{o['far_pct']:.2f} / {o['mar_pct']:.2f}")
    cp = j["changepoints"]
    for p, v in cp["scores"].items():
        table.add_row(f"change points NAB {p}", f"{v:.2f}")
    table.add_row(
        "change points hit / false alarms",
        f"{cp['detected']}/{cp['changepoints']} / {cp['false_alarms']}",
    )
    console.print(table)
    _throughput(console, j)
    console.print(f"results written to {out}/<folder>/<file>.csv")
    if json_out is not None:
        json_out.write_text(json.dumps(j, indent=2) + "\n")
        console.print(f"figures written to {json_out}")


def _throughput(console: Console, j: dict[str, Any]) -> None:
    parts = [
        f"node path {j['samples_per_s']:,} samples/s "
        f"({j['cpu_samples_per_s']:,} per core by CPU time)"
    ]
    for d, v in (j.get("detector_samples_per_s") or {}).items():
        parts.append(f"{d} {v:,} samples/s")
    console.print("throughput: " + "; ".join(parts))
