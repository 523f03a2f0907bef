"""params.yaml from conf/: recompose it, or check that it is not stale.

python -m pipeline.params compose [OVERRIDE ...]   # rewrite params.yaml (`make params`)
python -m pipeline.params check                    # exit 1 if stale (`make check-params`)
"""

from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf

from pipeline.plumbing.config import (
    FRESH_STAMP,
    check_params_fresh,
    load_params,
    validate,
    write_params,
)
from pipeline.plumbing.errors import PipelineError
from pipeline.plumbing.paths import PARAMS, ROOT
from pipeline.plumbing.process import skip_last_collection

USAGE = "usage: python -m pipeline.params [compose [OVERRIDE ...] | check]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "check"
    try:
        if command == "compose":
            write_params(PARAMS, argv[1:])
            validate(OmegaConf.load(PARAMS))
            print(f"wrote {PARAMS.relative_to(ROOT)} from conf/")
        elif command == "check" and len(argv) <= 1:
            if os.environ.get("DVC_EXP_NAME"):
                print("params.yaml was composed by `dvc exp run`; not compared with conf/")
            else:
                check_params_fresh(load_params(PARAMS), stamp=FRESH_STAMP)
                print("params.yaml agrees with conf/")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except PipelineError as error:
        print(f"params: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    skip_last_collection()
    raise SystemExit(main())
