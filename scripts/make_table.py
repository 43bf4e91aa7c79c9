"""Turn several results_post.json files into the paper's Table 3 layout (Markdown).

    python -m scripts.make_table FCN-8s=out/fcn/results_post.json PSPNet=out/psp/results_post.json \
        [--method CascadePSP] [--output table.md]

Each argument is LABEL=PATH (the coarse-mask source and the eval_post result of its refined folder).
For reference, the paper's PSPNet row on BIG: 90.49 / 59.63 -> 93.93 / 75.32.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from util.atomic import OverwritesInput, check_writable, refuse_overwriting_inputs, write_text
from evaluation.tables import results_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', help='LABEL=path/to/results_post.json')
    parser.add_argument('--method', default='CascadePSP', help='name of the refinement method in the rows')
    parser.add_argument('--output', help='also write the table to this file')
    args = parser.parse_args(argv)
    entries = []
    for item in args.results:
        label, sep, path = item.partition('=')
        if not sep:
            parser.error(f'{item}: expected LABEL=PATH')
        if not Path(path).is_file():
            parser.error(f'{path}: no such results file')
        entries.append((label, path))
    if args.output:
        try:
            refuse_overwriting_inputs({'--output': args.output}, {label: path for label, path in entries})
            check_writable(args.output, '--output')
        except (OSError, OverwritesInput) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    try:
        table = results_table(entries, args.method)
    except (ValueError, KeyError, TypeError) as e:  # not JSON, or not eval_post.py's results_post.json
        print(f'error: {", ".join(p for _, p in entries)}: not results_post.json files of eval_post.py ({type(e).__name__}: {e})',
              file=sys.stderr)
        return 2
    if args.output:
        try:
            write_text(args.output, table)  # checked against the inputs above, before any work
        except OSError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    sys.stdout.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
