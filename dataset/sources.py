"""Where the training and evaluation data come from, and how each is arranged.

Every link is the one its authors publish (the dataset pages; for BIG, relabeled PASCAL, FSS-1000 and the
weights, the CascadePSP README, docs/models.md, docs/dataset.md and its pip package). They were built in
from those published links and could not be fetched from the offline machines this code was written on.
A remote lists candidates in order: the first that answers is used, the next ones are backups.
Checksums are per candidate, because only the GitHub release of the weights has a published MD5. When a
link moves, pass ``--url NAME=URL`` or serve the files from a mirror (``--mirror``: each file under its
``filename``; a mirror may also serve ``SHA256SUMS``).
"""
from __future__ import annotations

from dataclasses import dataclass

from util.fetch import Remote, Source, drive_candidates, url_candidate

SOURCES = {s.name: s for s in (
    Source('MSRA_10K', 'flat', (Remote('MSRA10K_Imgs_GT.zip', (url_candidate('http://mftp.mmcheng.net/Data/MSRA10K_Imgs_GT.zip'),)),)),
    Source('DUTS-TR', 'flat', (Remote('DUTS-TR.zip', (url_candidate('http://saliencydetection.net/duts/download/DUTS-TR.zip'),)),)),
    Source('DUTS-TE', 'flat', (Remote('DUTS-TE.zip', (url_candidate('http://saliencydetection.net/duts/download/DUTS-TE.zip'),)),)),
    # Images and masks are two archives; the authors' script fetched only the images.
    Source('ecssd', 'flat', (
        Remote('images.zip', (url_candidate('https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip'),)),
        Remote('ground_truth_mask.zip',
               (url_candidate('https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip'),)))),
    Source('fss', 'classes', (Remote('fewshot_data.zip', drive_candidates('16TgqOeI_0P41Eh3jWQlxlRXG9KIqtMgI')),),
           note='FSS-1000 (fewshot_data.zip, Google Drive)'),
    Source('BIG', 'tree', (Remote('BIG.zip', drive_candidates('1cLQvy1giJTSrHV4FGzXgadBgI0zNtIxN',
                                                    '1yXP-PDyBD1BIvr7wJ6aLSRMO9UQqo8V5')),),
           note='BIG: 50 validation + 100 test objects, 2048x1600 to 5000x3600 (Google Drive, with a backup)'),
    Source('PASCAL', 'tree', (Remote('PASCAL.zip', drive_candidates('1vtkR05TTSQYu6XPrNr88sh3m7UxDazn2',
                                                          '1iiOPhjp-YBfc-lUpTbbF2ApsxPNYnqqf')),),
           note='relabeled PASCAL VOC 2012, 500 images (Google Drive, with a backup)'),
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
