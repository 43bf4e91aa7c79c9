"""Download and arrange the training sets, the evaluation sets and the released model.

    python download_dataset.py [--what training|evaluation|all|NAME ...] [--root data]
                               [--mirror URL] [--url NAME=URL ...] [--keep_archives]

Layout written under --root: MSRA_10K/, DUTS-TR/, DUTS-TE/, ecssd/ (X.jpg + X.png), fss/CLASS/ (N.jpg +
N.png), BIG/ and PASCAL/ (NAME_im/_seg/_gt), model (released weights). Finished parts are skipped;
interrupted transfers continue where they stopped. See dataset/sources.py for the URLs.
"""
from __future__ import annotations

import argparse
import logging
import sys

from dataset.download import DownloadError, download_source
from dataset.sources import EVALUATION, SOURCES, TRAINING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--what', nargs='+', default=['training'],
                        help=f"training, evaluation, all, or names: {', '.join(SOURCES)}")
    parser.add_argument('--root', default='data')
    parser.add_argument('--mirror', help='base URL serving every file under its name (and optionally SHA256SUMS)')
    parser.add_argument('--url', action='append', default=[], metavar='NAME=URL',
                        help='URL of a source (NAME/FILENAME=URL for sources of several files)')
    parser.add_argument('--keep_archives', action='store_true')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('download')

    groups = {'training': TRAINING, 'evaluation': EVALUATION, 'all': tuple(SOURCES)}
    names = [n for w in args.what for n in groups.get(w, (w,))]
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    urls = dict(u.split('=', 1) for u in args.url)
    failed = 0
    for name in dict.fromkeys(names):
        try:
            download_source(name, args.root, args.mirror, urls, args.keep_archives)
        except DownloadError as e:
            log.error('%s', e)
            failed += 1
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
