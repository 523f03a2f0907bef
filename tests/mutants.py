"""Mutation check of the numpy core: change one thing in the forward pass, the loss, the
backward pass, the optimizer update or the training loop's bookkeeping, and a fast test must
fail. Run by hand (it takes minutes; it is not part of `make test`):

    python tests/mutants.py            # make mutants
    python tests/mutants.py --list     # the mutants only, without running the tests
    python tests/mutants.py --match model.py:   # only the mutants whose line contains this

Each mutant is one change to one function of TARGETS: a statement deleted (replaced by
`pass`), an arithmetic operator swapped (+ and -, * and /, in place too), a comparison
loosened or flipped, a numeric constant changed, a unary minus dropped. The tests of tests/nn
run against each mutant in a scratch copy of the project (the working tree is never touched);
a mutant that no test kills is printed, and the exit status is 1 if there is any.
"""

from __future__ import annotations

import argparse
import ast
import copy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ["tests/nn"]
TIMEOUT = 120  # seconds per mutant; a mutant that hangs counts as killed
# module path -> functions (Class.method for methods) whose every line must matter
TARGETS = {
    "pipeline/nn/model.py": [
        "MLP.forward",
        "MLP.backward",
        "MLP.loss_and_grads",
        "MLP.cap_unit_norms",
        "MLP.logits",
    ],
    "pipeline/nn/loss.py": ["softmax_cross_entropy", "softmax_rows"],
    "pipeline/nn/activations.py": [
        "relu",
        "relu_backward",
        "leaky_relu",
        "leaky_relu_backward",
        "tanh",
        "tanh_backward",
        "sigmoid",
        "sigmoid_backward",
    ],
    "pipeline/nn/optimizers.py": ["Optimizer.step", "SGD.update", "Adam.prepare", "Adam.update"],
    "pipeline/nn/fitting.py": ["fit", "predict_and_score", "loss_and_accuracy"],
    "pipeline/nn/state.py": ["training_state", "restore_training_state"],
}
# Mutants that change no behaviour a test could see, each with the reason.
EQUIVALENT = {
    "forward: compare in `mask = (rng.random(a.shape, dtype=self.dtype) >= dropout)": (
        "a uniform draw equals the dropout probability exactly with probability ~0"
    ),
    "forward: compare in `a = a * ((rng.random(a.shape, dtype=self.dtype) >= input_dropout)": (
        "a uniform draw equals the input dropout probability exactly with probability ~0"
    ),
    "cap_unit_norms: compare in `over = norms > max_norm`": (
        "a row exactly at the cap is scaled by max_norm / norm = 1.0: its bits stay the same"
    ),
    "leaky_relu_backward: compare in `da *= np.where(a > 0,": (
        "leaky ReLU's A is 0 only where Z is exactly 0, where either slope is a subgradient"
    ),
    "fit: compare in `order = rng.permutation(n) if batch < n else None`": (
        "with one batch of all rows, shuffling them changes the mean gradient only by rounding"
    ),
}
SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Pow: ast.Mult,
}  # fmt: skip


def functions(tree: ast.Module, names: list[str]) -> Iterator[ast.FunctionDef]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            yield node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and f"{node.name}.{item.name}" in names:
                    yield item


def is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)


def candidates(function: ast.FunctionDef) -> Iterator[tuple[ast.AST, str]]:
    """(node, kind) for every place in the body of `function` a mutant changes."""
    for node in (n for statement in function.body for n in ast.walk(statement)):
        if isinstance(node, ast.stmt) and not is_docstring(node):
            yield node, "delete"
        if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in SWAPS:
            yield node, "swap"
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            yield node, "compare"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            yield node, "unary"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            yield node, "constant"


def replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """Put `new` where `old` sits in `tree`."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(item is old for item in value):
                value[[item is old for item in value].index(True)] = new
                return


def mutate(tree: ast.Module, index: int, kind: str) -> ast.Module:
    """A copy of `tree` with its `index`-th node (in ast.walk order) changed as `kind` says."""
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    if kind == "delete":
        replace(tree, node, ast.Pass())
    elif kind == "swap":
        node.op = SWAPS[type(node.op)]()
    elif kind == "compare":
        node.ops = [SWAPS[type(node.ops[0])](), *node.ops[1:]]
    elif kind == "unary":
        replace(tree, node, node.operand)
    elif kind == "constant":
        node.value = node.value + 1 if isinstance(node.value, int) else node.value * 2 + 1e-3
    return ast.fix_missing_locations(tree)


def mutants(module: Path, names: list[str]) -> Iterator[tuple[str, str]]:
    """(description, mutated source) for every mutant of `names` in `module`."""
    source = module.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    index_of = {id(node): index for index, node in enumerate(ast.walk(tree))}
    for function in functions(tree, names):
        for node, kind in candidates(function):
            text = ast.unparse(mutate(tree, index_of[id(node)], kind))
            shown = lines[node.lineno - 1].strip()
            yield f"{module.name}:{node.lineno} {function.name}: {kind} in `{shown}`", text


def killed(workdir: Path, relative: str, text: str) -> bool:
    target = workdir / relative
    original = target.read_text()
    target.write_text(text)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly",
             "-p", "no:cacheprovider", *TESTS],
            cwd=workdir, capture_output=True, timeout=TIMEOUT,
        )  # fmt: skip
        return done.returncode != 0
    except subprocess.TimeoutExpired:
        return True
    finally:
        target.write_text(original)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--match", default="", help="only mutants whose description has this")
    args = parser.parse_args()
    every = [
        (relative, description, text)
        for relative, names in TARGETS.items()
        for description, text in mutants(REPO / relative, names)
        if args.match in description
    ]
    if args.list:
        for _, description, _ in every:
            print(description)
        print(f"{len(every)} mutants")
        return 0
    survivors, equivalent = [], []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        for name in ("pipeline", "tests", "conf", "pyproject.toml"):
            source = REPO / name
            if source.is_dir():
                shutil.copytree(
                    source, workdir / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(source, workdir / name)
        for number, (relative, description, text) in enumerate(every, start=1):
            alive = not killed(workdir, relative, text)
            reason = next((why for key, why in EQUIVALENT.items() if key in description), None)
            verdict = "killed" if not alive else "equivalent" if reason else "SURVIVED"
            print(f"[{number}/{len(every)}] {verdict:<10} {description}")
            if alive:
                (equivalent if reason else survivors).append(f"{description} ({reason})")
    dead = len(every) - len(survivors) - len(equivalent)
    print(f"\n{dead} of {len(every)} mutants killed by the tests of {', '.join(TESTS)}; "
          f"{len(equivalent)} equivalent, {len(survivors)} survived")  # fmt: skip
    for description in equivalent:
        print(f"equivalent: {description}")
    for description in survivors:
        print(f"SURVIVED: {description}")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
