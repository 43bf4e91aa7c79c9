"""Where the training/evaluation data and the released model come from, and how each is arranged.

URLs are those published by the dataset authors and the CascadePSP authors. They could not be checked
from the offline machine this code was written on; when one moves, pass ``--url NAME=URL`` or serve
the files from a mirror (``--mirror``; the file names are the ``filename`` fields). ``sha256`` is
checked when known, and a mirror may also serve ``SHA256SUMS`` (``HASH  FILENAME`` lines).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remote:
    filename: str           #: name of the downloaded file (and its name on a mirror)
    url: str | None         #: None: no stable public direct link known; needs --url or --mirror
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    name: str               #: folder (or file) created under the data root
    layout: str             #: 'flat' (X.jpg + X.png), 'classes' (CLASS/N.jpg + N.png), 'tree' (kept), 'file'
    remotes: tuple[Remote, ...]
    note: str = ''


SOURCES = {s.name: s for s in (
    Source('MSRA_10K', 'flat', (Remote('MSRA10K_Imgs_GT.zip', 'http://mftp.mmcheng.net/Data/MSRA10K_Imgs_GT.zip'),)),
    Source('DUTS-TR', 'flat', (Remote('DUTS-TR.zip', 'http://saliencydetection.net/duts/download/DUTS-TR.zip'),)),
    Source('DUTS-TE', 'flat', (Remote('DUTS-TE.zip', 'http://saliencydetection.net/duts/download/DUTS-TE.zip'),)),
    # Images and masks are two archives; the authors' script fetched only the images.
    Source('ecssd', 'flat', (
        Remote('images.zip', 'https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip'),
        Remote('ground_truth_mask.zip',
               'https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip'))),
    Source('fss', 'classes', (Remote('fewshot_data.zip', None),),
           note='FSS-1000 (github.com/HKUSTCV/FSS-1000): give its archive with --url fss=URL'),
    Source('BIG', 'tree', (Remote('BIG.zip', None),),
           note='BIG (CascadePSP README, Google Drive/OneDrive): give --url BIG=URL'),
    Source('PASCAL', 'tree', (Remote('PASCAL.zip', None),),
           note='relabeled PASCAL VOC 2012 (CascadePSP README): give --url PASCAL=URL'),
    Source('model', 'file', (Remote('model', None),),
           note="the released CascadePSP weights ('model', 259 MB, CascadePSP README): give --url model=URL"),
)}

TRAINING = ('MSRA_10K', 'DUTS-TR', 'DUTS-TE', 'ecssd', 'fss')
EVALUATION = ('BIG', 'PASCAL')
