"""A published table, reproduced: every preset in conf/experiment/ that names the result it
reproduces (its `reference`: paper, row, test error) is queued as a DVC experiment, the queue
runs them one after another, and a table sets each paper's test error beside ours.

    python -m pipeline.ladder run                    # every such preset (make ladder)
    python -m pipeline.ladder run lecun1998_300 …    # some (make ladder PRESETS="…"); all tabled
    python -m pipeline.ladder table [--markdown]     # the table again, from the MLflow store

Each experiment runs the whole pipeline (`dvc exp run --queue -S experiment=NAME`, then
`dvc exp run --run-all`) in a copy of the project, and logs one MLflow run, named after the
experiment and tagged `paper`, `paper.row` and `paper.test_error`, with its test accuracy and
training time. The table reads the newest finished run of each row from the store, so the
timings stay out of every committed, locked output. Rows go from the largest published error
to the smallest, the handwritten notes' network (which reports none) first.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace

from pipeline.plumbing.config import compose_conf, validate
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.paths import CONF_DIR, ROOT
from pipeline.plumbing.process import skip_last_collection

USAGE = "usage: python -m pipeline.ladder run [PRESET …] | table [--markdown]"


@dataclass(frozen=True)
class Row:
    preset: str  # conf/experiment/<preset>.yaml
    source: str  # the paper
    row: str  # its table's row
    paper_error: float | None  # the error it reports; None: it reports none
    epochs: int  # epochs the preset trains


def ladder_rows(names: list[str] | None = None) -> list[Row]:
    """The presets that name a published result, composed and checked as a stage would."""
    available = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
    unknown = sorted(set(names or ()) - set(available))
    if unknown:
        raise PipelineError(
            f"no preset {', '.join(unknown)} in conf/experiment/; the presets are: "
            + ", ".join(available)
        )
    rows = []
    for name in names or available:
        config = validate(compose_conf([f"experiment={name}"]))
        reference = config.reference
        if reference.source is None:
            if names:
                raise PipelineError(
                    f"preset {name} names no published result (reference.source is null in "
                    f"conf/experiment/{name}.yaml): give it one, or leave it out"
                )
            continue
        row = Row(name, reference.source, reference.row or name, reference.test_error, 0)
        rows.append(replace(row, epochs=config.train.epochs))
    return sorted(rows, key=lambda row: -1.0 if row.paper_error is None else -row.paper_error)


def dvc(*args: str) -> str:
    """Run dvc in the project; its output streams to the terminal unless captured here."""
    done = subprocess.run(["dvc", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise PipelineError(f"dvc {' '.join(args)} failed: {why[-1] if why else 'no output'}")
    return done.stdout


def experiment_name(preset: str, taken: set[str]) -> str:
    """The preset's name, numbered when an earlier experiment holds it (DVC names are unique)."""
    name, count = preset, 1
    while name in taken:
        count += 1
        name = f"{preset}-{count}"
    return name


def check_tracked(rows: list[Row]) -> None:
    """A queued experiment runs in a copy holding only the files git tracks: a preset git
    does not know would be missing there, and fail only once the queue reaches it."""
    for row in rows:
        path = f"conf/experiment/{row.preset}.yaml"
        known = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT,
                               capture_output=True)  # fmt: skip
        if known.returncode != 0:
            raise PipelineError(
                f"{path} is not tracked by git, and a queued experiment sees only tracked "
                f"files: git add {path} (a commit is not needed), then run the ladder again"
            )


def queue_and_run(rows: list[Row]) -> list[str]:
    """Queue `rows`, run the queue; return the names of the experiments queued."""
    check_tracked(rows)
    taken = set(dvc("exp", "ls", "--all-commits", "--name-only").split())
    names = []
    for row in rows:
        name = experiment_name(row.preset, taken)
        taken.add(name)
        names.append(name)
        dvc("exp", "run", "--queue", "-S", f"experiment={row.preset}", "-n", name)
        print(f"ladder: queued {name} ({row.source}: {row.row}, {row.epochs} epochs)")
    print("ladder: running the queue, one experiment at a time (dvc exp run --run-all)")
    # Streamed, not captured: the trainings' progress is what the user watches. Its exit
    # status says nothing of a failed experiment (DVC 3.67 exits 0): the store says.
    subprocess.run(["dvc", "exp", "run", "--run-all", "-j", "1"], cwd=ROOT)
    return names


def untested(names: list[str]) -> list[str]:
    """The experiments among `names` without a FINISHED, tested MLflow run."""
    import mlflow

    def tested(name: str) -> bool:
        runs = mlflow.search_runs(
            filter_string=f"tags.`dvc.exp_name` = '{name}' and attributes.status = 'FINISHED'",
            search_all_experiments=True, output_format="list",
        )  # fmt: skip
        return any("test/accuracy" in run.data.metrics for run in runs)

    return [name for name in names if not tested(name)]


def newest_runs(rows: list[Row]) -> dict[str, object]:
    """Per row, the newest FINISHED run tagged with its paper's row that was tested."""
    import mlflow

    from pipeline.tracking.store import open_store

    tracking = validate(compose_conf()).tracking
    experiment_id = open_store(tracking)
    found = {}
    for row in rows:
        quoted = row.row.replace("'", "\\'")
        runs = mlflow.search_runs(
            [experiment_id], f"tags.`paper.row` = '{quoted}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], output_format="list",
        )  # fmt: skip
        tested = [run for run in runs if "test/accuracy" in run.data.metrics]
        if tested:
            found[row.preset] = tested[0]
    return found


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def percent(error: float | None) -> str:
    return "—" if error is None else f"{100 * error:.2f}%"


def table_lines(rows: list[Row], runs: dict, markdown: bool) -> list[str]:
    header = ["preset", "paper", "network, data", "paper's error", "ours", "epochs", "training",
              "run id"]  # fmt: skip
    body = []
    for row in rows:
        run = runs.get(row.preset)
        if run is None:
            ours, epochs, took, run_id = "not run", str(row.epochs), "—", "—"
        else:
            metrics, params = run.data.metrics, run.data.params
            ours = percent(1 - metrics["test/accuracy"])
            if row.paper_error is not None:
                ours += " ✔" if 1 - metrics["test/accuracy"] <= row.paper_error else " ✘"
            epochs = params.get("train.epochs", "?")
            if params.get("train.include_dev") == "True":  # a final fit on train and dev
                epochs += " on train + dev"
            took = minutes(metrics["train/seconds"]) if "train/seconds" in metrics else "—"
            run_id = run.info.run_id
        body.append([row.preset, row.source, row.row, percent(row.paper_error), ours, epochs,
                     took, run_id])  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(cells) + " |" for cells in body]
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *body]
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command not in ("run", "table") or (command == "table" and set(rest) - {"--markdown"}):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        rows = ladder_rows()
        queued = queue_and_run(ladder_rows(rest) if rest else rows) if command == "run" else []
        print("\n".join(table_lines(rows, newest_runs(rows), "--markdown" in rest)))
        failed = untested(queued)
        if failed:
            raise PipelineError(
                f"{', '.join(failed)} failed: `dvc queue logs NAME` shows why; the table "
                "above lists what did run"
            )
    except PipelineError as error:
        print(f"ladder: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    skip_last_collection()
    sys.exit(main())
