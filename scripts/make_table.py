"""Turn results files into Markdown tables: eval_post's results_post.json files into the paper's Table 3 layout,
or the learning benchmark's results.json into its comparison table (the one the README shows).

    python -m scripts.make_table FCN-8s=out/fcn/results_post.json PSPNet=out/psp/results_post.json \
        [--method CascadePSP] [--output table.md]
    python -m scripts.make_table --learning output/benchmark_learning/results.json --model lite

Each argument is LABEL=PATH (the coarse-mask source and the eval_post result of its refined folder).
For reference, the paper's PSPNet row on BIG: 90.49 / 59.63 -> 93.93 / 75.32.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from util.atomic import OverwritesInput, check_writable, refuse_overwriting_inputs, write_text
from evaluation.learning import comparison_markdown, results_from_json
from evaluation.tables import results_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='*', help='LABEL=path/to/results_post.json')
    parser.add_argument('--learning', metavar='RESULTS_JSON',
                        help="scripts/benchmark_learning.py's results.json: print its comparison table")
    parser.add_argument('--model', nargs='+', default=['lite'], help='with --learning: the models\' columns')
    parser.add_argument('--method', default='CascadePSP', help='name of the refinement method in the rows')
    parser.add_argument('--output', help='also write the table to this file')
    args = parser.parse_args(argv)
    if args.learning:
        if (failed := _check_output(args.output, [('--learning', args.learning)])) is not None:
            return failed
        try:
            results = results_from_json(json.loads(Path(args.learning).read_text()))
            table = comparison_markdown(results, args.model) + '\n'
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f'error: {args.learning}: not a results.json of scripts/benchmark_learning.py with the models '
                  f'{", ".join(args.model)} ({type(e).__name__}: {e})', file=sys.stderr)
            return 2
        return _emit(table, args.output)
    if not args.results:
        parser.error('give LABEL=results_post.json arguments, or --learning results.json')
    entries = []
    for item in args.results:
        label, sep, path = item.partition('=')
        if not sep:
            parser.error(f'{item}: expected LABEL=PATH')
        if not Path(path).is_file():
            parser.error(f'{path}: no such results file')
        entries.append((label, path))
    if (failed := _check_output(args.output, entries)) is not None:
        return failed
    try:
        table = results_table(entries, args.method)
    except (ValueError, KeyError, TypeError) as e:  # not JSON, or not eval_post.py's results_post.json
        print(f'error: {", ".join(p for _, p in entries)}: not results_post.json files of eval_post.py ({type(e).__name__}: {e})',
              file=sys.stderr)
        return 2
    return _emit(table, args.output)


def _check_output(output: str | None, inputs: list[tuple[str, str]]) -> int | None:
    """2 (with the message printed) when ``output`` is an input or cannot be written, else None."""
    if output:
        try:
            refuse_overwriting_inputs({'--output': output}, dict(inputs))
            check_writable(output, '--output')
        except (OSError, OverwritesInput) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    return None


def _emit(table: str, output: str | None) -> int:
    """Print ``table`` and write it to ``output`` (checked by :func:`_check_output` before any work)."""
    if output:
        try:
            write_text(output, table)
        except OSError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    sys.stdout.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
