"""Download and arrange the training sets, the evaluation sets and the released model.

    python download_dataset.py [--what training|evaluation|all|NAME ...] [--root data]
                               [--mirror URL] [--url NAME=URL ...] [--keep_archives]

Layout written under --root: MSRA_10K/, DUTS-TR/, DUTS-TE/, ecssd/ (X.jpg + X.png), fss/CLASS/ (N.jpg +
N.png), BIG/ and PASCAL/ (NAME_im/_seg/_gt), model and model_paper (released weights); magnet_cityscapes and
magnet_deepglobe fetch MagNet's backbone and refinement files. Cityscapes and DeepGlobe need a registration:
--what cityscapes|deepglobe prints where they are published. Finished parts are
skipped; interrupted transfers continue where they stopped; Google Drive backups are tried when a link
fails. --folders prints the coarse-mask inputs that are published as Drive folders (fetched by hand).
See dataset/sources.py for the links.
"""
from __future__ import annotations

import argparse
import logging
import sys

from dataset.sources import DATASET_DOC, DRIVE_FOLDERS, EVALUATION, TRAINING
from dataset.sources import SOURCES as DATA_SOURCES
from models.hub import MAGNET_SYSTEMS, WEIGHT_SOURCES
from util.fetch import DownloadError, download_source


#: MagNet's datasets: published behind a registration, so only where to get them (and how to lay them out).
REGISTERED_DATASETS = {
    'cityscapes': 'https://www.cityscapes-dataset.com/downloads/ (register, then leftImg8bit_trainvaltest.zip and '
                  'gtFine_trainvaltest.zip); datalist lines: leftImg8bit/val/CITY/X_leftImg8bit.png<TAB>'
                  'gtFine/val/CITY/X_gtFine_labelIds.png',
    'deepglobe': 'https://competitions.codalab.org/competitions/18468 (DeepGlobe Land Cover Classification; register '
                 'to download); datalist lines: X_sat.jpg<TAB>X_mask.png (RGB colour masks)',
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--what', nargs='+', default=['training'],
                        help=f"training, evaluation, all, or names: {', '.join({**DATA_SOURCES, **WEIGHT_SOURCES})}, "
                             f"{', '.join(MAGNET_SYSTEMS)}; {', '.join(REGISTERED_DATASETS)} print where to get them")
    parser.add_argument('--root', default='data')
    parser.add_argument('--mirror', help='base URL serving every file under its name (and optionally SHA256SUMS)')
    parser.add_argument('--url', action='append', default=[], metavar='NAME=URL',
                        help='URL of a source (NAME/FILENAME=URL for sources of several files)')
    parser.add_argument('--keep_archives', action='store_true')
    parser.add_argument('--folders', action='store_true',
                        help='print where the coarse masks published as Google Drive folders are, and their layout')
    args = parser.parse_args(argv)
    sources = {**DATA_SOURCES, **WEIGHT_SOURCES}  # looked up at call time: tests replace entries
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('download')
    if args.folders:
        print(f'Published as Google Drive folders (linked from {DATASET_DOC}); a folder cannot be fetched '
              'without Google\'s API: download it in a browser and arrange it as shown.')
        for folder in DRIVE_FOLDERS:
            print(f'- {folder.name}\n    layout: {folder.layout}')
        return 0

    registered = [w for w in args.what if w in REGISTERED_DATASETS]
    for name in registered:
        print(f'{name}: {REGISTERED_DATASETS[name]}')
    args.what = [w for w in args.what if w not in REGISTERED_DATASETS]
    if registered and not args.what:
        return 0
    groups = {'training': TRAINING, 'evaluation': EVALUATION, 'all': tuple(sources),
              **{name: (backbone, *refinements) for name, (_, _, backbone, refinements) in MAGNET_SYSTEMS.items()}}
    names = [n for w in args.what for n in groups.get(w, (w,))]
    unknown = [n for n in names if n not in sources]
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(sources)}")
    if bad := [u for u in args.url if '=' not in u]:
        parser.error(f"--url takes NAME=URL, got {', '.join(bad)}")
    urls = dict(u.split('=', 1) for u in args.url)
    if unknown := [n for n in urls if n.split('/')[0] not in sources]:
        parser.error(f"--url for unknown source(s) {', '.join(unknown)}; known: {', '.join(sources)}")
    failed = 0
    for name in dict.fromkeys(names):
        try:
            download_source(sources[name], args.root, args.mirror, urls, args.keep_archives)
        except DownloadError as e:
            log.error('%s', e)
            failed += 1
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
