"""Where the training/evaluation data and the released model come from, and how each is arranged.

Every link is the one its authors publish (the dataset pages; for BIG, relabeled PASCAL, FSS-1000 and the
weights, the CascadePSP README, docs/models.md, docs/dataset.md and its pip package). They were built in
from those published links and could not be fetched from the offline machines this code was written on.
A remote lists candidates in order: the first that answers is used, the next ones are backups.
Checksums are per candidate, because only the GitHub release of the weights has a published MD5. When a
link moves, pass ``--url NAME=URL`` or serve the files from a mirror (``--mirror``: each file under its
``filename``; a mirror may also serve ``SHA256SUMS``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: Google Drive's direct-download endpoint; large files answer with a confirmation form first (handled in
#: :mod:`dataset.download`). ``CASCADEPSP_DRIVE_URL`` overrides it (tests point it at a local server).
DRIVE_URL = 'https://drive.google.com/uc?export=download&id={id}'


@dataclass(frozen=True)
class Candidate:
    """One place a file can be fetched from: a URL, or a Google Drive file id."""
    url: str | None = None
    drive_id: str | None = None
    md5: str | None = None      #: published MD5, verified when given
    sha256: str | None = None

    def resolve(self) -> str:
        if self.url:
            return self.url
        return os.environ.get('CASCADEPSP_DRIVE_URL', DRIVE_URL).format(id=self.drive_id)


@dataclass(frozen=True)
class Remote:
    filename: str                        #: name of the downloaded file (and its name on a mirror)
    candidates: tuple[Candidate, ...]    #: tried in order; empty: no public direct link (needs --url/--mirror)


@dataclass(frozen=True)
class Source:
    name: str               #: folder (or file) created under the data root
    layout: str             #: 'flat' (X.jpg + X.png), 'classes' (CLASS/N.jpg + N.png), 'tree' (kept), 'file'
    remotes: tuple[Remote, ...]
    note: str = ''


def _url(url: str, md5: str | None = None) -> Candidate:
    return Candidate(url=url, md5=md5)


def _drive(*ids: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(drive_id=i) for i in ids)


#: The released weights (259 MB): the file the authors' pip package downloads, with its published MD5.
MODEL_URL = 'https://github.com/hkchengrex/CascadePSP/releases/download/v1.0/model'
MODEL_MD5 = '7478d4a9c42ab52beb6d7e9683402fe0'

SOURCES = {s.name: s for s in (
    Source('MSRA_10K', 'flat', (Remote('MSRA10K_Imgs_GT.zip', (_url('http://mftp.mmcheng.net/Data/MSRA10K_Imgs_GT.zip'),)),)),
    Source('DUTS-TR', 'flat', (Remote('DUTS-TR.zip', (_url('http://saliencydetection.net/duts/download/DUTS-TR.zip'),)),)),
    Source('DUTS-TE', 'flat', (Remote('DUTS-TE.zip', (_url('http://saliencydetection.net/duts/download/DUTS-TE.zip'),)),)),
    # Images and masks are two archives; the authors' script fetched only the images.
    Source('ecssd', 'flat', (
        Remote('images.zip', (_url('https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip'),)),
        Remote('ground_truth_mask.zip',
               (_url('https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip'),)))),
    Source('fss', 'classes', (Remote('fewshot_data.zip', _drive('16TgqOeI_0P41Eh3jWQlxlRXG9KIqtMgI')),),
           note='FSS-1000 (fewshot_data.zip, Google Drive)'),
    Source('BIG', 'tree', (Remote('BIG.zip', _drive('1cLQvy1giJTSrHV4FGzXgadBgI0zNtIxN',
                                                    '1yXP-PDyBD1BIvr7wJ6aLSRMO9UQqo8V5')),),
           note='BIG: 50 validation + 100 test objects, 2048x1600 to 5000x3600 (Google Drive, with a backup)'),
    Source('PASCAL', 'tree', (Remote('PASCAL.zip', _drive('1vtkR05TTSQYu6XPrNr88sh3m7UxDazn2',
                                                          '1iiOPhjp-YBfc-lUpTbbF2ApsxPNYnqqf')),),
           note='relabeled PASCAL VOC 2012, 500 images (Google Drive, with a backup)'),
    # The GitHub release is MD5-verified; the Drive copy of the retrained model is its backup (no checksum
    # is published for it, which the download log says).
    Source('model', 'file', (Remote('model', (_url(MODEL_URL, MODEL_MD5),
                                              *_drive('1FMmUYtWsZB4fReoQmtqqn-NOZrC8CfWK'))),),
           note="the released CascadePSP weights ('model', 259 MB)"),
    Source('model_paper', 'file', (Remote('model_paper', _drive('103nLN1JQCs2yASkna0HqfioYZO7MA_J9')),),
           note='the weights of the paper (the release above is the retrained, slightly better model)'),
)}

TRAINING = ('MSRA_10K', 'DUTS-TR', 'DUTS-TE', 'ecssd', 'fss')
EVALUATION = ('BIG', 'PASCAL')


#: The page of the authors' repository that links the Google Drive *folders* of coarse segmentations. The
#: folder links themselves are not built in: they were not available to check here, and a folder cannot be
#: fetched without Google's API anyway, so the user downloads it in a browser.
DATASET_DOC = 'https://github.com/hkchengrex/CascadePSP/blob/master/docs/dataset.md'


@dataclass(frozen=True)
class DriveFolder:
    """Inputs published only as Google Drive folders, and where ``eval.py`` expects them."""
    name: str
    layout: str


DRIVE_FOLDERS = (
    DriveFolder('BIG / PASCAL coarse masks of other models (FCN-8s, DeepLabV3+, RefineNet, PSPNet)',
                'data/BIG/test_MODEL/NAME_im.jpg + NAME_seg.png + NAME_gt.png (one folder per model and set; '
                'the images and ground truths come from the BIG / PASCAL download)'),
    DriveFolder('ADE20K scene-parsing inputs (RefineNet, EncNet, PSPNet label maps)',
                'data/ADE/images/NAME.jpg, data/ADE/gt/NAME.png, data/ADE/MODEL/NAME.png; '
                'then scripts/split_scene.py (see the README)'),
)
