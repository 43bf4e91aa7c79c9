"""The practitioner's side: refining one's own files (``refine.py``) and pictures of the result."""
